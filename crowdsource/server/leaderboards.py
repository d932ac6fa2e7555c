"""Leaderboards: the public board (best public score per participant, kept current as scores
are recorded) and the private board (best private score among each participant's final
submissions)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, delete, select, text
from sqlalchemy.orm import Session
from traitlets.config import LoggingConfigurable

from crowdsource.errors import BadRequest, Forbidden
from crowdsource.metrics import get_metric
from crowdsource.server import competitions, finals, ladder
from crowdsource.server.competitions import CompetitionManager
from crowdsource.server.events import RESYNC, Event, EventBus
from crowdsource.server.storage import locks
from crowdsource.server.storage.engine import unavailable
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import (
    Competition,
    Entry,
    Participant,
    Submission,
    Team,
    TeamMember,
    UTCDateTime,
)
from crowdsource.server.tasks import Background
from crowdsource.times import iso, utcnow

BOARDS = ("public", "private")
# events carrying a competition's view (loaded here when it was too large to travel)
COMPETITION_EVENTS = ("competition.created", "competition.closed", "competition.updated")
Listener = Callable[[Event], None]


def _better(comp: Competition, new: float, old: float | None) -> bool:
    """Whether `new` beats `old` under the competition's metric."""
    if old is None:
        return True
    return new > old if get_metric(comp.metric).higher_is_better else new < old


def apply(
    session: Session,
    comp: Competition,
    *,
    participant_id: int,
    submission_id: int,
    public: float | None,
    private: float | None,
    at: datetime,
    count: bool = True,
) -> None:
    """Fold one recorded score into the public board: one upsert, same transaction as the
    score. (The private board is read from the final submissions: `private_entries`.)"""
    if str(participant_id) in comp.disqualified:
        return
    if comp.public_scoring == "ladder" and public is not None:  # None: the board stays
        public = ladder.climb(
            shown(session, comp, participant_id=participant_id),
            public,
            step=comp.ladder_step,
            higher_is_better=get_metric(comp.metric).higher_is_better,
        )
    row = {
        "competition_id": comp.id,
        "board": "public",
        "participant_id": participant_id,
        "score": public,
        "best_submission_id": None if public is None else submission_id,
        "submissions": int(count),
        "last_submission_at": at if count else None,
    }
    session.connection().execute(UPSERT[get_metric(comp.metric).higher_is_better], row)


def shown(session: Session, comp: Competition, *, participant_id: int) -> float | None:
    """A participant's score on the public board (None before one)."""
    return session.scalar(
        select(Entry.score).where(
            Entry.competition_id == comp.id,
            Entry.board == "public",
            Entry.participant_id == participant_id,
        )
    )


def on_conflict(wins: str) -> str:
    """The entry upsert's conflict clause (the same SQL on SQLite and PostgreSQL), adding the
    submission to the count and keeping the better score."""
    better = f"excluded.score IS NOT NULL AND (entries.score IS NULL OR excluded.score {wins} "
    better += "entries.score)"
    return f"""
        ON CONFLICT (competition_id, board, participant_id) DO UPDATE SET
            submissions = entries.submissions + excluded.submissions,
            last_submission_at = CASE WHEN excluded.submissions > 0 AND (
                    entries.last_submission_at IS NULL
                    OR excluded.last_submission_at > entries.last_submission_at)
                THEN excluded.last_submission_at ELSE entries.last_submission_at END,
            score = CASE WHEN {better} THEN excluded.score ELSE entries.score END,
            best_submission_id = CASE WHEN {better}
                THEN excluded.best_submission_id ELSE entries.best_submission_id END
    """


def _upsert(wins: str) -> TextClause:
    """The entry upsert, keeping the better score."""
    return text(f"""
        INSERT INTO entries (competition_id, board, participant_id, score, best_submission_id,
                             submissions, last_submission_at)
        VALUES (:competition_id, :board, :participant_id, :score, :best_submission_id,
                :submissions, :last_submission_at)
        {on_conflict(wins)}
    """).bindparams(bindparam("last_submission_at", type_=UTCDateTime()))


UPSERT = {True: _upsert(">"), False: _upsert("<")}  # by higher_is_better


def captains(session: Session, competition_id: int) -> dict[int, int]:
    """Each team member of a competition, and the captain whose id keys their team's entry."""
    rows = session.execute(
        select(TeamMember.participant_id, Team.captain_id)
        .join(Team, Team.id == TeamMember.team_id)
        .where(TeamMember.competition_id == competition_id)
    )
    return {member: captain for member, captain in rows}


def rebuild(session: Session, comp: Competition) -> None:
    """Recompute a competition's boards from its submissions (after a re-score, or a join
    that merges a participant's entry into their team's)."""
    locks.take(session, [locks.competition(comp.id)])  # no submission writes an entry meanwhile
    session.execute(delete(Entry).where(Entry.competition_id == comp.id))
    session.flush()
    captain = captains(session, comp.id)
    subs = session.scalars(
        select(Submission)
        .where(Submission.competition_id == comp.id, Submission.state != "failed")
        .order_by(Submission.id)
    )
    for sub in subs:
        apply(
            session,
            comp,
            participant_id=captain.get(sub.participant_id, sub.participant_id),
            submission_id=sub.id,
            public=sub.public_score,
            private=sub.private_score,
            at=sub.created_at,
        )


def rank(session: Session, comp: Competition, *, participant_id: int) -> int | None:
    """A participant's current rank on the public board (None before a score)."""
    higher = get_metric(comp.metric).higher_is_better
    found = (
        session.connection()
        .execute(RANK[higher], {"competition_id": comp.id, "participant_id": participant_id})
        .scalar()
    )
    return None if found is None else int(found)


def _rank(wins: str) -> TextClause:
    """One more than the entries that beat the participant's public score."""
    return text(f"""
        SELECT (SELECT count(*) FROM entries e
                WHERE e.competition_id = mine.competition_id AND e.board = 'public'
                  AND e.score {wins} mine.score) + 1
        FROM entries mine
        WHERE mine.competition_id = :competition_id AND mine.board = 'public'
          AND mine.participant_id = :participant_id AND mine.score IS NOT NULL
    """)


RANK = {True: _rank(">"), False: _rank("<")}  # by higher_is_better


def team_views(session: Session, competition_id: int) -> dict[int, dict[str, Any]]:
    """The public view of a competition's teams (no join codes), by captain."""
    rows = session.execute(
        select(Team.id, Team.name, Team.captain_id, Participant.id, Participant.name)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .join(Participant, Participant.id == TeamMember.participant_id)
        .where(Team.competition_id == competition_id)
        .order_by(Team.id, TeamMember.joined_at, Participant.id)
    )
    views: dict[int, dict[str, Any]] = {}
    for team_id, team_name, captain_id, member_id, member_name in rows:
        view = views.setdefault(captain_id, {"id": team_id, "name": team_name, "members": []})
        view["members"].append({"id": member_id, "name": member_name})
    return views


def public_entries(session: Session, comp: Competition) -> list[Entry]:
    """The public board's entries, in rank order (participants with no score yet last)."""
    order = Entry.score.desc() if get_metric(comp.metric).higher_is_better else Entry.score.asc()
    return list(
        session.scalars(
            select(Entry)
            .where(Entry.competition_id == comp.id, Entry.board == "public")
            .order_by(Entry.score.is_(None), order, Entry.last_submission_at)
        )
    )


def private_entries(session: Session, comp: Competition) -> list[Entry]:
    """The private board's entries, in rank order: one per participant or team, scored by
    the best private score among their final submissions (`finals.counted`; a team's are
    chosen from all its members' submissions), never the best of all."""
    higher = get_metric(comp.metric).higher_is_better
    captain = captains(session, comp.id)
    out = hidden(comp, captain)
    entries = []
    for participant_id, standing in finals.standings(session, comp, captain).items():
        if participant_id in out:
            continue
        best = finals.best_private(standing.finals, higher_is_better=higher)
        subs = standing.submissions
        entries.append(
            Entry(
                competition_id=comp.id,
                board="private",
                participant_id=participant_id,
                score=None if best is None else best.private_score,
                best_submission_id=None if best is None else best.id,
                submissions=len(subs),
                last_submission_at=max(c.created_at for c in subs),
            )
        )
    sign = -1.0 if higher else 1.0
    entries.sort(key=lambda e: (e.score is None, sign * (e.score or 0.0), e.last_submission_at))
    return entries


def hidden(comp: Competition, captain: dict[int, int]) -> set[int]:
    """The entries not shown: disqualified participants', and the teams of disqualified
    members (a team stands or falls together)."""
    out = {int(p) for p in comp.disqualified}
    return out | {captain[p] for p in out if p in captain}


def load_board(session: Session, comp: Competition, *, name: str) -> dict[str, Any]:
    """One board, ranked (ties share a rank; participants with no score yet come last;
    disqualified ones are not shown); a team's entry is named by the team and lists its
    members."""
    metric = get_metric(comp.metric)
    found = private_entries(session, comp) if name == "private" else public_entries(session, comp)
    out = hidden(comp, captains(session, comp.id))
    found = [e for e in found if e.participant_id not in out]
    ids = {e.participant_id for e in found}
    query = select(Participant.id, Participant.name).where(Participant.id.in_(ids))
    names: dict[int, str] = {pid: pname for pid, pname in session.execute(query)}
    teams = team_views(session, comp.id)
    entries: list[dict[str, Any]] = []
    for i, entry in enumerate(found):
        team = teams.get(entry.participant_id)
        tied = entries and entries[-1]["score"] == entry.score
        rank = None if entry.score is None else (entries[-1]["rank"] if tied else i + 1)
        entries.append(
            {
                "rank": rank,
                "name": names[entry.participant_id] if team is None else team["name"],
                "participant": {"id": entry.participant_id, "name": names[entry.participant_id]},
                "team": team,
                "score": entry.score,
                "submissions": entry.submissions,
                "last_submission_at": iso(entry.last_submission_at),
            }
        )
    return {
        "competition_id": comp.id,
        "title": comp.title,
        "board": name,
        "metric": comp.metric,
        "higher_is_better": metric.higher_is_better,
        "entries": entries,
    }


CSV_COLUMNS = (
    "rank",
    "participant",
    "participant_id",
    "members",
    "score",
    "submissions",
    "last_submission_at",
)


def as_csv(board: dict[str, Any]) -> str:
    """A board as CSV text, with a header row (the columns of the client's frame)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for entry in board["entries"]:
        who = entry["participant"]
        writer.writerow(
            [
                "" if entry["rank"] is None else entry["rank"],
                entry.get("name") or who["name"],
                who["id"],
                ", ".join(m["name"] for m in (entry.get("team") or {}).get("members", [])),
                "" if entry["score"] is None else repr(entry["score"]),
                entry["submissions"],
                entry["last_submission_at"] or "",
            ]
        )
    return out.getvalue()


class LeaderboardManager(LoggingConfigurable):
    """Boards read through a cache that each change empties, and the live push: every event
    goes to the listeners, leaderboard ones with the fresh public board (loaded once per
    change, however many listen; changes that arrive meanwhile coalesce into one more)."""

    def __init__(
        self, *, store: Store, bus: EventBus, competitions: CompetitionManager, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.competitions = competitions
        self.tasks = Background()
        self._listeners: set[Listener] = set()
        self._boards: dict[int, dict[str, Any]] = {}  # public boards, by competition
        self._private: dict[int, dict[str, Any]] = {}  # private boards of closed competitions
        self._texts: dict[int, str] = {}
        self._changes: dict[int, int] = {}  # a read caches only if no change came meanwhile
        self._loading: dict[int, bool] = {}  # competition: another change came while loading
        bus.subscribe(self._on_event)

    # ------------------------------------------------------------ reading

    async def board(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> dict[str, Any]:
        """A board; the private one only for the host, or for anyone after close."""
        if board not in BOARDS:
            raise BadRequest("'board' must be public or private")
        cache = self._boards if board == "public" else self._private
        if competition_id in cache:
            return cache[competition_id]

        def run(session: Session) -> tuple[dict[str, Any], bool]:
            comp = competitions.get(session, competition_id)
            closed = competitions.status(comp, utcnow()) == "closed"
            if board == "private" and not closed and (viewer is None or viewer.id != comp.host_id):
                raise Forbidden(
                    f"the private board of competition {competition_id} is shown after it closes"
                )
            return load_board(session, comp, name=board), closed

        changes = self._changes.get(competition_id, 0)
        data, closed = await self.store.tx(run)
        # a private board changes with no event while submissions arrive: kept once closed
        keep = board == "public" or closed
        if keep and changes == self._changes.get(competition_id, 0):
            cache[competition_id] = data
        return data

    async def board_text(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> str:
        """A board as JSON text; the public one is encoded once per change, not per read."""
        text = self._texts.get(competition_id) if board == "public" else None
        if text is None:
            data = await self.board(competition_id, board=board, viewer=viewer)
            text = json.dumps(data)
            if board == "public" and self._boards.get(competition_id) is data:
                self._texts[competition_id] = text
        return text

    async def board_csv(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> str:
        """A board as CSV: one row per entry."""
        return as_csv(await self.board(competition_id, board=board, viewer=viewer))

    async def every(self) -> list[dict[str, Any]]:
        """Every competition's public board, and the private one once closed."""

        def run(session: Session) -> list[dict[str, Any]]:
            out = []
            now = utcnow()
            for comp in competitions.listing(session, kind=None, state=None, now=now):
                out.append(load_board(session, comp, name="public"))
                if competitions.status(comp, now) == "closed":
                    out.append(load_board(session, comp, name="private"))
            return out

        return await self.store.tx(run)

    # ------------------------------------------------------------ the live push

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive every event, leaderboard ones carrying the board; returns the unsubscribe."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def _forget(self, competition_id: int) -> None:
        """Drop a competition's cached board."""
        self._changes[competition_id] = self._changes.get(competition_id, 0) + 1
        self._boards.pop(competition_id, None)
        self._private.pop(competition_id, None)
        self._texts.pop(competition_id, None)

    def _on_event(self, event: Event) -> None:
        """An event from any process: empty the cache it makes stale, complete it, pass it on."""
        if event.type == RESYNC:  # the bus may have missed events: every board may be stale
            for competition_id in set(self._boards) | set(self._private) | set(self._changes):
                self._forget(competition_id)
        if event.type == "competition.deleted":
            self._forget(event.competition_id)
        if event.type == "leaderboard.changed":
            self._forget(event.competition_id)
            if not self._listeners:
                return
            if event.competition_id in self._loading:
                self._loading[event.competition_id] = True
            else:
                self._loading[event.competition_id] = False
                self.tasks.spawn(self._send_board(event))
            return
        if event.type in COMPETITION_EVENTS and not event.data:
            self.tasks.spawn(self._send_competition(event))
            return
        self._emit(event)

    async def _send_board(self, event: Event) -> None:
        """Send the fresh board; changes that arrive meanwhile make one more send."""
        competition_id = event.competition_id
        try:
            while True:
                self._loading[competition_id] = False
                data = await self.board(competition_id, board="public", viewer=None)
                self._emit(Event(event.type, competition_id, data, event.at))
                if not self._loading[competition_id]:
                    return
        except Exception as exc:
            if not unavailable(exc):
                self.log.exception("could not load leaderboard %s", competition_id)
            else:  # the next change, or the resync when the database is back, sends it
                self.log.warning("leaderboard %s not sent: database unavailable", competition_id)
        finally:
            self._loading.pop(competition_id, None)

    async def _send_competition(self, event: Event) -> None:
        """Send a competition event with the competition's public view."""
        data = await self.competitions.get(event.competition_id)
        self._emit(Event(event.type, event.competition_id, data, event.at))

    def _emit(self, event: Event) -> None:
        """Hand an event to every listener; one failing does not stop the others."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.exception("event listener failed")

    def close(self) -> None:
        """Stop pushing."""
        self._listeners.clear()
        self.tasks.cancel()
