"""Advisory locks on PostgreSQL, always taken in one order, so that no two transactions (of
one server or of several) ever wait on each other in a circle. SQLite needs none: every write
transaction there takes the one database lock up front (BEGIN IMMEDIATE)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# The first of the two keys of each lock: which kind of thing it guards. Competitions come
# first in the one order; the odd values keep clear of other applications' small numbers.
COMPETITION = 0x63730001
PARTICIPANT = 0x63730002
TEAM = 0x63730003  # last in the order: a writer takes it after the others (see `team`)

# All of a transaction's locks in one round trip: the rows of `unnest` come, and their
# locks are taken, in the order of the arrays (the one order).
TAKE = text("""
    SELECT count(CASE WHEN l.shared THEN pg_advisory_xact_lock_shared(l.space, l.id)::text
                      ELSE pg_advisory_xact_lock(l.space, l.id)::text END)
    FROM unnest(CAST(:spaces AS integer[]), CAST(:ids AS integer[]),
                CAST(:shared AS boolean[])) WITH ORDINALITY AS l(space, id, shared, n)
""")


@dataclass(frozen=True, order=True)
class Lock:
    """One advisory lock, held to the end of the transaction that takes it."""

    space: int
    id: int
    shared: bool = False


def competition(competition_id: int, *, shared: bool = False) -> Lock:
    """A competition's board: shared by writers of one participant's entries, exclusive for
    a writer of every entry (a rebuild, a re-score)."""
    return Lock(COMPETITION, competition_id, shared)


def participant(participant_id: int) -> Lock:
    """A participant's submissions: their keys and daily limits are checked, then written."""
    return Lock(PARTICIPANT, participant_id)


def team(team_id: int) -> Lock:
    """A team's submissions: their shared daily limit is checked, then written. A submission
    learns its team only once it holds its participant's lock, so it takes this one after
    the others (last in the one order); a group commit holding two teams' locks may then
    meet another in a circle, which PostgreSQL breaks, and the group is written job by job."""
    return Lock(TEAM, team_id)


def take(session: Session, locks: Iterable[Lock]) -> None:
    """Take `locks` (exclusive wins over shared) in the one order, skipping those this
    transaction holds. A session here is one transaction, so `session.info` is too."""
    if session.get_bind().dialect.name != "postgresql":
        return
    wanted: dict[tuple[int, int], bool] = {}
    for lock in locks:
        wanted[lock.space, lock.id] = wanted.get((lock.space, lock.id), True) and lock.shared
    held: dict[tuple[int, int], bool] = session.info.setdefault("advisory_locks", {})
    taking = []
    for key, shared in sorted(wanted.items()):
        if key in held and (shared or not held[key]):
            continue
        if key in held:  # shared held, exclusive wanted: two such would deadlock
            raise RuntimeError(f"advisory lock {key} is held shared; take it exclusive first")
        taking.append((key, shared))
    if not taking:
        return
    session.execute(
        TAKE,
        {
            "spaces": [space for (space, _), _ in taking],
            "ids": [id_ for (_, id_), _ in taking],
            "shared": [shared for _, shared in taking],
        },
    )
    held.update(taking)
