"""A public board kept in memory in rank order: loaded once from the database, then moved one
entry at a time (logarithmic) as scores are recorded, in whichever process recorded them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sortedcontainers import SortedKeyList

Key = tuple[bool, float, str, int]


@dataclass(frozen=True, slots=True)
class Standing:
    """One entry of a board: a participant's, or a team's keyed by its captain."""

    participant_id: int
    participant_name: str
    team: dict[str, Any] | None
    score: float | None
    submissions: int
    last_submission_at: str | None  # ISO text, as the API shows it

    @property
    def name(self) -> str:
        """The name the board shows: the team's, else the participant's."""
        return self.participant_name if self.team is None else str(self.team["name"])

    def view(self, rank: int | None) -> dict[str, Any]:
        """The entry as the API shows it."""
        return {
            "rank": rank,
            "name": self.name,
            "participant": {"id": self.participant_id, "name": self.participant_name},
            "team": self.team,
            "score": self.score,
            "submissions": self.submissions,
            "last_submission_at": self.last_submission_at,
        }


def state(
    participant_id: int,
    score: float | None,
    submissions: int,
    last_submission_at: str | None,
    name: str | None = None,
) -> dict[str, Any]:
    """An entry's recorded state as it travels on the event bus (`leaderboard.entry`)."""
    return {
        "participant_id": participant_id,
        "score": score,
        "submissions": submissions,
        "last_submission_at": last_submission_at,
        "name": name,
    }


class Unknown(Exception):
    """An entry state for a participant the board cannot name: reload the board."""


class RankedBoard:
    """A competition's public board in rank order: best score first (ties share a rank, then
    by name), entries with no score last; disqualified entries are left out."""

    def __init__(
        self,
        *,
        header: dict[str, Any],
        higher_is_better: bool,
        teams: dict[int, dict[str, Any]] | None = None,
        hidden: set[int] | None = None,
    ) -> None:
        self.header = header  # competition_id, title, metric, higher_is_better
        self.sign = -1.0 if higher_is_better else 1.0
        self.teams = teams or {}  # team views by captain
        self.hidden = hidden or set()
        self.changes = 0  # counts the changes applied, for caches of encoded boards
        self._by_id: dict[int, Standing] = {}
        self._sorted: SortedKeyList = SortedKeyList(key=self.key)
        members = [(c, m) for c, team in self.teams.items() for m in team["members"]]
        self._names = {m["id"]: m["name"] for _, m in members}
        self._captain = {m["id"]: c for c, m in members}

    def key(self, s: Standing) -> Key:
        """Where an entry sorts: scored first, better first, then by name and id."""
        signed = self.sign * s.score if s.score is not None else 0.0
        return (s.score is None, signed, s.name, s.participant_id)

    def __len__(self) -> int:
        return len(self._sorted)

    def fill(self, found: list[dict[str, Any]]) -> None:
        """Add the entries read from the database (each state with its participant's name)."""
        standings = [self._standing(s) for s in found if s["participant_id"] not in self.hidden]
        self._by_id.update((s.participant_id, s) for s in standings)
        self._sorted.update(standings)
        self.changes += 1

    def put(self, found: dict[str, Any]) -> bool:
        """Apply an entry's newer state; a stale one (fewer submissions, or no better score
        with as many) changes nothing. Returns whether the board changed; raises Unknown for
        a participant it cannot name."""
        pid = found["participant_id"]
        if pid in self.hidden:
            return False
        old = self._by_id.get(pid)
        if old is not None and not self._newer(found, old):
            return False
        new = self._standing(found, old)
        if old is not None:
            self._sorted.remove(old)
        self._sorted.add(new)
        self._by_id[pid] = new
        self.changes += 1
        return True

    def _newer(self, found: dict[str, Any], old: Standing) -> bool:
        """Whether a state is newer than the entry's: more submissions, or as many and a
        better score (a board entry's score only improves between reloads)."""
        if found["submissions"] != old.submissions:
            return bool(found["submissions"] > old.submissions)
        score = found["score"]
        if score is None or score == old.score:
            return False
        return old.score is None or self.sign * score < self.sign * old.score

    def _standing(self, found: dict[str, Any], old: Standing | None = None) -> Standing:
        """A standing from a state, named from the state, the old entry or the teams."""
        pid = found["participant_id"]
        name = found.get("name") or (old.participant_name if old else self._names.get(pid))
        if name is None:
            raise Unknown(f"participant {pid} is not known to the board")
        self._names[pid] = name
        return Standing(
            participant_id=pid,
            participant_name=name,
            team=self.teams.get(pid),
            score=found["score"],
            submissions=found["submissions"],
            last_submission_at=found["last_submission_at"],
        )

    # ------------------------------------------------------------ reading

    def rank(self, s: Standing) -> int | None:
        """One more than the entries with a strictly better score (None without a score)."""
        if s.score is None:
            return None
        return int(self._sorted.bisect_key_left((False, self.sign * s.score))) + 1

    def entries(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """The entries from position `start` to `stop`, ranked."""
        out: list[dict[str, Any]] = []
        previous: Standing | None = None
        rank: int | None = None
        for i, s in enumerate(self._sorted.islice(start, stop), start):
            if previous is None:
                rank = self.rank(s)
            elif s.score is None:
                rank = None
            elif s.score != previous.score:
                rank = i + 1
            out.append(s.view(rank))
            previous = s
        return out

    def entry_of(self, participant_id: int) -> Standing | None:
        """The entry a participant stands on: theirs, or their team's (None: none shown)."""
        return self._by_id.get(self._captain.get(participant_id, participant_id))

    def position(self, s: Standing) -> int:
        """An entry's index in rank order."""
        return int(self._sorted.index(s))

    def view(self, entries: list[dict[str, Any]]) -> dict[str, Any]:
        """The board object of the API, with the given entries."""
        return {**self.header, "entries": entries}
