"""Small typed records for what the server returns: competitions, submissions, events. Each
model reads only the fields the protocol's record of it declares (crowdsource.protocol.types),
so a model cannot wait on a field the server never sends."""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd

from crowdsource import protocol
from crowdsource.protocol import types as wire

if TYPE_CHECKING:
    from crowdsource.client.client import Client

__all__ = [
    "LEADERBOARD_COLUMNS",
    "Competition",
    "Ensemble",
    "Event",
    "Submission",
    "Team",
    "leaderboard_frame",
]


def wire_fields(model: type, records: Sequence[type]) -> set[str]:
    """The fields of a model that its protocol records declare (what it reads from JSON)."""
    declared = {key for record in records for key in typing.get_type_hints(record)}
    return {f.name for f in fields(model)} & declared


def _known(model: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a model's wire fields present in the server's JSON."""
    return {k: data[k] for k in wire_fields(model, model.RECORDS) if k in data}


LEADERBOARD_COLUMNS = [
    "rank",
    "participant",
    "participant_id",
    "members",
    "score",
    "submissions",
    "last_submission_at",
]


@dataclass(eq=False)
class Competition:
    """A competition as the server describes it, with shortcuts to its data and to submit."""

    RECORDS: ClassVar[tuple[type, ...]] = (wire.Competition,)

    id: int
    title: str
    type: str
    metric: str
    id_column: str
    targets: list[str]
    status: str
    description: str = ""
    higher_is_better: bool | None = None
    classes: list[Any] | None = None
    host: dict[str, Any] = field(default_factory=dict)
    opens_at: str | None = None
    closes_at: str | None = None
    daily_limit: int | None = None
    max_team_size: int | None = None
    public_fraction: float = 1.0
    rows: int | None = None
    answer_rows: int | None = None
    final_submissions: int = 2
    public_scoring: str = "plain"
    ladder_step: float | None = None
    archived: bool = False
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    client: Client | None = field(default=None, repr=False)
    _dataset: pd.DataFrame | None = field(default=None, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], client: Client | None = None) -> Competition:
        """Build from the server's competition object (protocol record `Competition`)."""
        known = _known(cls, data)
        known.setdefault("title", "")
        known.setdefault("targets", [])
        known.setdefault("status", "open")
        known.setdefault("id_column", "id")
        known.setdefault("metric", "")
        known.setdefault("type", "")
        return cls(**known, raw=dict(data), client=client)

    def _require_client(self) -> Client:
        """The client this competition came from."""
        if self.client is None:
            raise RuntimeError("this competition is not bound to a Client")
        return self.client

    @property
    def dataset(self) -> pd.DataFrame:
        """The frame participants see (downloaded once, then cached)."""
        if self._dataset is None:
            self._dataset = self._require_client().dataset(self.id)
        return self._dataset

    @property
    def host_name(self) -> str | None:
        """The host's display name."""
        return self.host.get("name") if self.host else None

    def template(self, *, probabilities: bool = False) -> pd.DataFrame:
        """The dataset's ids with empty target columns to fill in (one per class if asked)."""
        frame = self.dataset[[self.id_column]].copy().reset_index(drop=True)
        columns = [str(c) for c in self.classes or []] if probabilities else []
        for column in columns or self.targets:
            frame[column] = np.nan
        return frame

    def check(self, predictions: pd.DataFrame) -> int:
        """The pre-flight check: run the server's checks on predictions here, against this
        competition's description and dataset ids, without submitting. Returns their rows;
        raises InvalidSubmission with the very message the server would answer."""
        from crowdsource.client.client import preflight

        return preflight(self, predictions, self.dataset)

    def submit(self, predictions: pd.DataFrame, *, wait: bool = True) -> Submission:
        """Submit predictions to this competition."""
        return self._require_client().submit(self.id, predictions, wait=wait)

    def leaderboard(self, board: str = "public") -> pd.DataFrame:
        """This competition's leaderboard as a frame."""
        return self._require_client().leaderboard(self.id, board=board)

    def select_final(self, *, submissions: Sequence[int]) -> dict[str, Any]:
        """Select your final submissions to this competition (until it closes)."""
        return self._require_client().select_final(self.id, submissions=submissions)

    def submissions(self) -> list[Submission]:
        """Your submissions to it (everyone's, if you host it)."""
        return self._require_client().submissions(self.id)

    def refresh(self) -> Competition:
        """Fetch the current state of this competition from the server."""
        return self._require_client().competition(self.id)

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON for this competition."""
        return dict(self.raw)


@dataclass(eq=False)
class Submission:
    """A submission and its score, rank and remaining quota."""

    RECORDS: ClassVar[tuple[type, ...]] = (wire.Submission, wire.ReceivedSubmission)

    id: int
    competition_id: int
    state: str
    participant: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    public_score: float | None = None
    private_score: float | None = None
    rank: int | None = None
    created_at: str | None = None
    scored_at: str | None = None
    remaining_today: int | None = None
    quota_resets_at: str | None = None
    final: bool | None = None  # in a host's list: whether it counts on the private board
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Submission:
        """Build from the server's submission object (`Submission`, or in a host's list
        `ReceivedSubmission`)."""
        known = _known(cls, data)
        known["history"] = known.get("history") or []
        known["participant"] = known.get("participant") or {}
        return cls(**known, raw=dict(data))

    @property
    def score(self) -> float | None:
        """The public score (None until scored)."""
        return self.public_score

    @property
    def outcome(self) -> str:
        """One line: state, public score, rank and any reason."""
        line = f"submission {self.id} to competition {self.competition_id}: {self.state}"
        if self.public_score is not None:
            line += f", public score {self.public_score:.6g}"
        if self.rank is not None:
            line += f", rank {self.rank}"
        return line + (f" ({self.reason})" if self.reason else "")

    @property
    def quota(self) -> str:
        """What is left of today's submissions, and when it resets."""
        if self.remaining_today is None:
            return "no daily limit"
        text = f"{self.remaining_today} submissions left today"
        return text + (f" (resets {self.quota_resets_at})" if self.quota_resets_at else "")

    def __str__(self) -> str:
        """The outcome and the quota, on one line."""
        return f"{self.outcome}; {self.quota}"

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON for this submission."""
        return dict(self.raw)


@dataclass(eq=False)
class Team:
    """Your team in a competition: its members and the join code to share with others."""

    RECORDS: ClassVar[tuple[type, ...]] = (wire.Team,)

    id: int
    competition_id: int
    name: str
    code: str
    members: list[dict[str, Any]] = field(default_factory=list)
    captain: dict[str, Any] | None = None
    max_team_size: int | None = None
    created_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Team:
        """Build from the server's team object (protocol record `Team`)."""
        known = _known(cls, data)
        return cls(**known, raw=dict(data))

    @property
    def member_names(self) -> list[str]:
        """The members' names, in the order they joined."""
        return [str(m.get("name")) for m in self.members]

    def __str__(self) -> str:
        """Name, members and the code to share, on one line."""
        size = f"{len(self.members)}/{self.max_team_size}" if self.max_team_size else ""
        return (
            f"team {self.name!r} in competition {self.competition_id}: "
            f"{', '.join(self.member_names)} ({size} members); join code: {self.code}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON for this team."""
        return dict(self.raw)


@dataclass(frozen=True)
class Event:
    """One message of the server's event stream."""

    type: str
    competition_id: int | None = None
    at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Event:
        """Build from one decoded WebSocket frame (protocol schema `Event`)."""
        data = message.get("data")
        return cls(
            type=str(message.get("type", "")),
            competition_id=message.get("competition_id"),
            at=message.get("at"),
            data=data if isinstance(data, dict) else {},
        )

    @classmethod
    def decode(cls, text: str | bytes) -> Event:
        """Build from one frame's text as it arrives (ValueError if it is not a frame)."""
        return cls.from_json(protocol.decode(text))


ENSEMBLE_COLUMNS = ["k", "member", "member_score", "public_score", "private_score"]


@dataclass(eq=False)
class Ensemble:
    """The crowd's ensemble of a competition, as its host sees it: `scores` holds one row per
    k (the k-th member's name and own score, and the blend of the top k's public and, after
    close, private score); the board the members are ranked by is `board`."""

    competition_id: int
    metric: str
    higher_is_better: bool
    board: str
    closed: bool
    scores: pd.DataFrame
    members: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ensemble:
        """Build from the server's ensemble object (protocol record `Ensemble`)."""
        score = "private_score" if data["closed"] else "public_score"
        by_k = {i: m for i, m in enumerate(data["members"], start=1)}
        rows = [
            {
                "k": s["k"],
                "member": by_k[s["k"]]["name"],
                "member_score": by_k[s["k"]][score],
                "public_score": s["public_score"],
                "private_score": s["private_score"],
            }
            for s in data["scores"]
        ]
        return cls(
            competition_id=data["competition_id"],
            metric=data["metric"],
            higher_is_better=data["higher_is_better"],
            board=data["board"],
            closed=data["closed"],
            scores=pd.DataFrame(rows, columns=ENSEMBLE_COLUMNS),
            members=list(data["members"]),
        )

    @property
    def score_column(self) -> str:
        """The column the members are ranked and compared by: private after close."""
        return "private_score" if self.closed else "public_score"

    @property
    def best_member(self) -> dict[str, Any] | None:
        """The member with the best own score on the ranking board (None with no members)."""
        scored = [m for m in self.members if m[self.score_column] is not None]
        if not scored:
            return None
        sign = -1.0 if self.higher_is_better else 1.0
        return min(scored, key=lambda m: sign * m[self.score_column])

    @property
    def best_k(self) -> int | None:
        """The k whose blend scores best (None with no scores)."""
        pairs = [
            (int(k), float(v))
            for k, v in zip(self.scores["k"], self.scores[self.score_column], strict=True)
            if v is not None and not pd.isna(v)
        ]
        if not pairs:
            return None
        sign = -1.0 if self.higher_is_better else 1.0
        return min(pairs, key=lambda pair: (sign * pair[1], pair[0]))[0]  # the smaller k on a tie

    @property
    def summary(self) -> str:
        """One line: the best blend against the best single member."""
        best, k = self.best_member, self.best_k
        if best is None or k is None:
            return f"competition {self.competition_id}: no scored entries to blend yet"
        column = self.score_column
        blend = float(self.scores.loc[self.scores["k"] == k, column].iloc[0])
        board = "private" if self.closed else "public"
        mine = best[column]
        better = blend > mine if self.higher_is_better else blend < mine
        verdict = "beats" if better else "does not beat"
        return (
            f"competition {self.competition_id} ({self.metric}, {board} rows): the blend of the "
            f"top {k} scores {blend:.6g}, which {verdict} the best single member, "
            f"{best['name']} ({mine:.6g})"
        )


def leaderboard_frame(board: Mapping[str, Any]) -> pd.DataFrame:
    """A leaderboard JSON object as a frame, with its metric and board in `.attrs`; a team's
    row is named by the team, its members listed (`participant_id` is its captain's)."""
    rows = [
        {
            "rank": entry.get("rank"),
            "participant": entry.get("name") or (entry.get("participant") or {}).get("name"),
            "participant_id": (entry.get("participant") or {}).get("id"),
            "members": _members(entry.get("team")),
            "score": entry.get("score"),
            "submissions": entry.get("submissions"),
            "last_submission_at": entry.get("last_submission_at"),
        }
        for entry in board.get("entries", [])
    ]
    frame = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    frame.attrs.update(
        competition_id=board.get("competition_id"),
        board=board.get("board", "public"),
        metric=board.get("metric"),
        higher_is_better=board.get("higher_is_better"),
    )
    return frame


def _members(team: dict[str, Any] | None) -> str | None:
    """A team's member names, comma-separated (None outside a team)."""
    if not team:
        return None
    return ", ".join(str(m.get("name")) for m in team.get("members", []))


def competitions_frame(items: Sequence[Competition], columns: Sequence[str]) -> pd.DataFrame:
    """The competitions as a table of the named columns (`host` is the host's name)."""
    rows = [
        {c: comp.host_name if c == "host" else getattr(comp, c) for c in columns} for comp in items
    ]
    return pd.DataFrame(rows, columns=list(columns))
