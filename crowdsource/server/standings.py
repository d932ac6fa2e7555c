"""Standings: the functions (and participants) of a competition type ranked across its rounds,
by mean normalised rank. A function is known by the digest of its code; an edited one is a
new version, linked to the one before (docs/standings.md).

Participants are ranked as their round's board ranks them (the private board once a round
closed, the public one before), read through the leaderboard manager. Functions are ranked
per round among functions, each by its best public submission there (the private score of
that submission once the round closed), from one query over the submissions table: no
predictions are read.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from traitlets import Float, TraitError, validate
from traitlets.config import LoggingConfigurable

from crowdsource.errors import BadRequest
from crowdsource.metrics import get_metric
from crowdsource.server import ladder
from crowdsource.server.competitions import TYPES, status
from crowdsource.server.events import Event, EventBus
from crowdsource.server.leaderboards import LeaderboardManager
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import Competition, Participant, Submission
from crowdsource.times import iso, utcnow

K = TypeVar("K", bound=Hashable)
FunctionKey = tuple[int, str, str]  # participant id, function name, digest


def check_type(value: str | None) -> str:
    """The competition type asked for, or a 400 naming the choices."""
    if value not in TYPES:
        raise BadRequest(f"'type' must be one of {', '.join(TYPES)}, e.g. ?type=classify")
    return value


# ---------------------------------------------------------------- the rules


def ranked(scores: Mapping[K, float], *, higher_is_better: bool) -> dict[K, int]:
    """Competition ranks ("1224"): one more than the scores that beat each; ties share."""
    ordered = sorted(scores.values(), reverse=higher_is_better)
    first: dict[float, int] = {}
    for i, score in enumerate(ordered):
        first.setdefault(score, i + 1)
    return {key: first[score] for key, score in scores.items()}


def normalised(rank: int, of: int) -> float:
    """(rank - 1) / (of - 1): 0 for the best, 1 for the last; 0 when alone."""
    return 0.0 if of <= 1 else (rank - 1) / (of - 1)


def versions(
    first_seen: Mapping[FunctionKey, datetime],
) -> dict[FunctionKey, tuple[int, str | None]]:
    """Each function's version and the digest it replaced: one participant's function of
    one name, numbered by when each digest was first seen."""
    by_name: dict[tuple[int, str], list[tuple[datetime, str]]] = defaultdict(list)
    for (participant, name, digest), at in first_seen.items():
        by_name[(participant, name)].append((at, digest))
    out: dict[FunctionKey, tuple[int, str | None]] = {}
    for (participant, name), seen in by_name.items():
        previous = None
        for version, (_, digest) in enumerate(sorted(seen), start=1):
            out[(participant, name, digest)] = (version, previous)
            previous = digest
    return out


def summary(ranks: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds, mean normalised rank and wins of one row's ranks."""
    mean = sum(r["normalised"] for r in ranks) / len(ranks)
    return {
        "rounds": len(ranks),
        "mean_normalised_rank": round(mean, 12),
        "wins": sum(r["rank"] == 1 for r in ranks),
        "ranks": ranks,
    }


def ordered(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows by mean normalised rank; then more rounds, more wins, name."""
    return sorted(
        rows,
        key=lambda r: (
            r["mean_normalised_rank"],
            -r["rounds"],
            -r["wins"],
            r["participant"]["name"],
            (r.get("function") or {}).get("version", 0),
        ),
    )


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Round:
    """A competition of the type, as the standings see it."""

    id: int
    title: str
    opens_at: datetime
    closes_at: datetime | None
    closed: bool
    higher_is_better: bool
    ladder_step: float | None  # a Ladder board's step while open: scores shown rounded
    disqualified: frozenset[int]

    def score(self, public: float | None, private: float | None) -> float | None:
        """The score a submission counts with here (as the round's board would show it)."""
        if self.closed and private is not None:
            return private
        if public is not None and self.ladder_step is not None:
            return ladder.rounded(public, step=self.ladder_step)
        return public


def rounds_of(session: Session, kind: str, now: datetime) -> list[Round]:
    """The opened, not archived competitions of a type, oldest first."""
    rows = session.scalars(
        select(Competition)
        .where(Competition.type == kind, Competition.archived.is_(False))
        .order_by(Competition.opens_at, Competition.id)
    )
    out = []
    for comp in rows:
        state = status(comp, now)
        if state == "upcoming":
            continue
        closed = state == "closed"
        out.append(
            Round(
                id=comp.id,
                title=comp.title,
                opens_at=comp.opens_at,
                closes_at=comp.closes_at,
                closed=closed,
                higher_is_better=get_metric(comp.metric).higher_is_better,
                ladder_step=comp.ladder_step
                if comp.public_scoring == "ladder" and not closed
                else None,
                disqualified=frozenset(int(p) for p in comp.disqualified),
            )
        )
    return out


def function_runs(session: Session, kind: str) -> list[Any]:
    """Every scored submission a function made to a competition of the type: one query over
    submissions (no predictions), with the participant's name."""
    query = (
        select(
            Submission.competition_id,
            Submission.participant_id,
            Participant.name,
            Submission.function_name,
            Submission.function_digest,
            Submission.public_score,
            Submission.private_score,
            Submission.created_at,
        )
        .join(Competition, Competition.id == Submission.competition_id)
        .join(Participant, Participant.id == Submission.participant_id)
        .where(
            Competition.type == kind,
            Competition.archived.is_(False),
            Submission.function_digest.is_not(None),
            Submission.state == "scored",
        )
        .order_by(Submission.id)
    )
    return list(session.execute(query))


def function_rows(rounds: list[Round], runs: list[Any]) -> list[dict[str, Any]]:
    """Functions ranked in each round among functions, then across rounds."""
    by_id = {r.id: r for r in rounds}
    names: dict[int, str] = {}
    first_seen: dict[FunctionKey, datetime] = {}
    best: dict[int, dict[FunctionKey, tuple[float, float | None]]] = defaultdict(dict)
    for cid, pid, pname, fname, digest, public, private, at in runs:
        key = (pid, fname, digest)
        names[pid] = pname
        first_seen[key] = min(at, first_seen.get(key, at))
        round_ = by_id.get(cid)
        if round_ is None or pid in round_.disqualified or public is None:
            continue
        sign = 1.0 if round_.higher_is_better else -1.0
        chosen = best[cid].get(key)
        if chosen is None or sign * public > sign * chosen[0]:  # chosen by public score
            best[cid][key] = (public, private)
    ranks: dict[FunctionKey, list[dict[str, Any]]] = defaultdict(list)
    for round_ in rounds:
        counted = {
            key: score
            for key, (public, private) in best.get(round_.id, {}).items()
            if (score := round_.score(public, private)) is not None
        }
        place = ranked(counted, higher_is_better=round_.higher_is_better)
        for key, rank in place.items():
            ranks[key].append(_rank(round_.id, rank, len(place)))
    linked = versions(first_seen)
    rows = []
    for key, found in ranks.items():
        pid, fname, digest = key
        version, previous = linked[key]
        function = {"name": fname, "digest": digest, "version": version, "previous": previous}
        rows.append(
            {"participant": {"id": pid, "name": names[pid]}, "function": function, **summary(found)}
        )
    return ordered(rows)


def _rank(competition_id: int, rank: int, of: int) -> dict[str, Any]:
    """One round's place."""
    return {
        "competition_id": competition_id,
        "rank": rank,
        "of": of,
        "normalised": round(normalised(rank, of), 12),
    }


def participant_rows(boards: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Participants ranked as each round's board ranks them (a team's members share its
    place), then across rounds."""
    ranks: dict[int, list[dict[str, Any]]] = defaultdict(list)
    names: dict[int, str] = {}
    for competition_id, board in boards:
        placed = [e for e in board["entries"] if e["rank"] is not None]
        for entry in placed:
            team = entry.get("team") or {}
            members = team.get("members") or [entry["participant"]]
            for member in members:
                names[member["id"]] = member["name"]
                ranks[member["id"]].append(_rank(competition_id, entry["rank"], len(placed)))
    rows = [
        {"participant": {"id": pid, "name": names[pid]}, **summary(found)}
        for pid, found in ranks.items()
    ]
    return ordered(rows)


def window(rows: list[dict[str, Any]], limit: int | None, offset: int) -> list[dict[str, Any]]:
    """`limit` rows (all if None) from `offset` on."""
    return rows[offset:] if limit is None else rows[offset : offset + limit]


def ok(task: asyncio.Future[Any]) -> bool:
    """A finished task that neither failed nor was cancelled."""
    return not task.cancelled() and task.exception() is None


@dataclass
class Computed:
    """One computation of a type's standings: the event count when it started, and when."""

    generation: int
    started: float
    task: asyncio.Future[dict[str, Any]]


class StandingsManager(LoggingConfigurable):
    """The standings of a competition type, from the submissions table and the boards: each
    type's computed at most once per `every` seconds however many read them, never older than
    the events that came before a read."""

    every = Float(
        1.0,
        help="Seconds between two computations of one type's standings (reads in between wait "
        "for the next one when something changed, and share it).",
    ).tag(config=True)

    @validate("every")
    def _check_every(self, proposal: Any) -> float:
        """Zero or more seconds."""
        if proposal.value < 0:
            raise TraitError(f"--standings-every must be 0 or more seconds, not {proposal.value}")
        return float(proposal.value)

    def __init__(
        self, *, store: Store, bus: EventBus, leaderboards: LeaderboardManager, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.leaderboards = leaderboards
        self.generation = 0  # events seen: any may change some standings
        self._computed: dict[str, Computed] = {}  # the last computation of each type
        bus.subscribe(self._changed)

    def _changed(self, event: Event) -> None:
        """Something happened: the next read computes again."""
        self.generation += 1

    async def standings(
        self, kind: str, *, limit: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        """`{type, rounds, functions, participants, functions_total, participants_total}` for
        competitions of type `kind`: `limit` functions and participants (all if None) from
        `offset` on."""
        whole = await self._whole(check_type(kind))
        return {
            **whole,
            "functions": window(whole["functions"], limit, offset),
            "participants": window(whole["participants"], limit, offset),
        }

    async def _whole(self, kind: str) -> dict[str, Any]:
        """A computation that started after every event before this read: the last one, the
        one running, or a new one (started `every` s after the one before at the earliest)."""
        since = self.generation
        while True:
            last = self._computed.get(kind)
            if last is not None and last.task.done() and not ok(last.task):
                last = None  # failed (the database away?): try again now
            if last is not None and last.generation >= since:
                return await asyncio.shield(last.task)
            if last is not None and not last.task.done():
                await asyncio.wait([last.task])  # a computation from before: the next is ours
                continue
            if last is not None:
                await asyncio.sleep(max(0.0, last.started + self.every - time.monotonic()))
                if self._computed.get(kind) is not last:
                    continue  # another read started the next one meanwhile
            task = asyncio.ensure_future(self._compute(kind))
            self._computed[kind] = Computed(self.generation, time.monotonic(), task)

    async def _compute(self, kind: str) -> dict[str, Any]:
        """Every row of the standings of type `kind`."""

        def run(session: Session) -> tuple[list[Round], list[Any]]:
            return rounds_of(session, kind, utcnow()), function_runs(session, kind)

        rounds, runs = await self.store.tx(run)
        boards = []
        for round_ in rounds:
            name = "private" if round_.closed else "public"
            board = await self.leaderboards.board(round_.id, board=name, viewer=None)
            boards.append((round_.id, board))
        functions = function_rows(rounds, runs)
        entered = {r["competition_id"] for row in functions for r in row["ranks"]}
        sizes = {cid: sum(e["rank"] is not None for e in b["entries"]) for cid, b in boards}
        shown = [r for r in rounds if sizes[r.id] or r.id in entered]
        participants = participant_rows(boards)
        return {
            "type": kind,
            "rounds": [
                {
                    "competition_id": r.id,
                    "title": r.title,
                    "closes_at": iso(r.closes_at),
                    "entries": sizes[r.id],
                }
                for r in shown
            ],
            "functions": functions,
            "participants": participants,
            "functions_total": len(functions),
            "participants_total": len(participants),
        }
