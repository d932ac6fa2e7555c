"""Leaderboards: the public board (best public score per participant, kept current as scores
are recorded) and the private board (best private score among each participant's final
submissions)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import TextClause, TextualSelect, bindparam, delete, select, text
from sqlalchemy.orm import Session
from traitlets import Float, Integer, TraitError, validate
from traitlets.config import LoggingConfigurable

from crowdsource.errors import BadRequest, Forbidden
from crowdsource.metrics import get_metric
from crowdsource.server import competitions, finals, ladder
from crowdsource.server.competitions import CompetitionManager
from crowdsource.server.events import ENTRY, RESYNC, Event, EventBus
from crowdsource.server.live import BATCHED, LiveBoards, owner_id
from crowdsource.server.ranked import RankedBoard, state
from crowdsource.server.storage import locks
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
K = TypeVar("K")


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
) -> dict[str, Any] | None:
    """Fold one recorded score into the public board: one upsert, same transaction as the
    score. Returns the entry's new state, for the live boards (None: a disqualified
    participant's, not written). (The private board is read from the final submissions:
    `private_entries`.)"""
    if str(participant_id) in comp.disqualified:
        return None
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
    found = session.connection().execute(UPSERT[get_metric(comp.metric).higher_is_better], row)
    pid, score, submissions, at_ = found.one()
    return state(pid, score, submissions, iso(at_))


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


def _upsert(wins: str) -> TextualSelect:
    """The entry upsert, keeping the better score."""
    return (
        text(f"""
        INSERT INTO entries (competition_id, board, participant_id, score, best_submission_id,
                             submissions, last_submission_at)
        VALUES (:competition_id, :board, :participant_id, :score, :best_submission_id,
                :submissions, :last_submission_at)
        {on_conflict(wins)}
        RETURNING participant_id, score, submissions, last_submission_at
    """)
        .bindparams(bindparam("last_submission_at", type_=UTCDateTime()))
        .columns(last_submission_at=UTCDateTime())
    )


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
    """The public board's entries (in no order: `ranked` orders them)."""
    return list(
        session.scalars(
            select(Entry).where(Entry.competition_id == comp.id, Entry.board == "public")
        )
    )


def private_entries(session: Session, comp: Competition) -> list[Entry]:
    """The private board's entries: one per participant or team, scored by the best private
    score among their final submissions (`finals.counted`; a team's are chosen from all its
    members' submissions), never the best of all."""
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
    return entries


def hidden(comp: Competition, captain: dict[int, int]) -> set[int]:
    """The entries not shown: disqualified participants', and the teams of disqualified
    members (a team stands or falls together)."""
    out = {int(p) for p in comp.disqualified}
    return out | {captain[p] for p in out if p in captain}


def ranked(session: Session, comp: Competition, *, name: str = "public") -> RankedBoard:
    """One board, read from the database into rank order (ties share a rank; participants
    with no score yet come last; disqualified ones are not shown); a team's entry is named
    by the team and lists its members."""
    higher = get_metric(comp.metric).higher_is_better
    found = private_entries(session, comp) if name == "private" else public_entries(session, comp)
    ids = {e.participant_id for e in found}
    query = select(Participant.id, Participant.name).where(Participant.id.in_(ids))
    names: dict[int, str] = {pid: pname for pid, pname in session.execute(query)}
    header = {
        "competition_id": comp.id,
        "title": comp.title,
        "board": name,
        "metric": comp.metric,
        "higher_is_better": higher,
    }
    board = RankedBoard(
        header=header,
        higher_is_better=higher,
        teams=team_views(session, comp.id),
        hidden=hidden(comp, captains(session, comp.id)),
    )
    board.fill(
        [
            state(
                e.participant_id,
                e.score,
                e.submissions,
                iso(e.last_submission_at),
                names[e.participant_id],
            )
            for e in found
        ]
    )
    return board


def load_board(session: Session, comp: Competition, *, name: str) -> dict[str, Any]:
    """One board with all its entries, read from the database."""
    board = ranked(session, comp, name=name)
    return board.view(board.entries())


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


def _discard(table: dict[K, set[Listener]], key: K, listener: Listener) -> None:
    """Take a listener out of its set in a table, and an emptied set out of the table."""
    listeners = table.get(key)
    if listeners is not None:
        listeners.discard(listener)
        if not listeners:
            del table[key]


class LeaderboardManager(LoggingConfigurable):
    """Boards for reading and the live push: public boards are kept in memory in rank order
    (`LiveBoards`), moved by each entry any process records and reloaded after whole-board
    changes; private boards are read from the database, and kept once closed."""

    live_top = Integer(
        100, help="Entries of each board that live listeners see (the snapshot's top)."
    ).tag(config=True)
    push_rate = Float(
        8.0, help="Live pushes per second per competition, at most (changes coalesce)."
    ).tag(config=True)
    send_queue_kb = Integer(
        1024,
        help="KiB an event-stream WebSocket may have waiting to be sent; a listener past it "
        "has fallen behind and is closed (code 4000), to resync when it reconnects.",
    ).tag(config=True)

    @validate("live_top")
    def _check_top(self, proposal: Any) -> int:
        """1 to 10,000 entries."""
        if not 1 <= proposal.value <= PAGE_MOST:
            raise TraitError(f"--live-top must be 1 to {PAGE_MOST}, not {proposal.value}")
        return int(proposal.value)

    @validate("push_rate", "send_queue_kb")
    def _check_positive(self, proposal: Any) -> Any:
        """Above zero."""
        if proposal.value <= 0:
            raise TraitError(f"{proposal.trait.name} must be above 0, not {proposal.value}")
        return proposal.value

    def __init__(
        self, *, store: Store, bus: EventBus, competitions: CompetitionManager, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.competitions = competitions
        self.tasks = Background()
        self.live = LiveBoards(self._load, top=self.live_top, rate=self.push_rate)
        self._listeners: set[Listener] = set()  # of every competition, every submission's
        # of one competition (None: of every one, of submissions their own only)
        self._watching: dict[int | None, set[Listener]] = {}
        self._owners: dict[tuple[int | None, int], set[Listener]] = {}  # by (that key, viewer)
        self._private: dict[int, dict[str, Any]] = {}  # private boards of closed competitions
        self._texts: dict[int, tuple[RankedBoard, int, str]] = {}  # whole public boards' JSON
        bus.subscribe(self._on_event)

    async def _load(self, competition_id: int) -> RankedBoard:
        """A public board, read from the database."""
        return await self.store.tx(lambda s: ranked(s, competitions.get(s, competition_id)))

    # ------------------------------------------------------------ reading

    async def board(
        self,
        competition_id: int,
        *,
        board: str,
        viewer: Participant | None,
        limit: int | None = None,
        offset: int = 0,
        around: bool = False,
    ) -> dict[str, Any]:
        """A board, or a page of it (`limit` entries from `offset`, or centred on the
        viewer's entry with `around`); the private one only for the host, or for anyone after
        close. The public board comes from memory."""
        if board not in BOARDS:
            raise BadRequest("'board' must be public or private")
        if board == "private":
            found = await self._private_board(competition_id, viewer)
            if around:
                assert viewer is not None
                return around_mine(found, viewer.id, limit=limit or AROUND_LIMIT)
            return paged(found, limit=limit, offset=offset)
        ranked_board = (await self.live.ready(competition_id)).board
        assert ranked_board is not None
        if around:
            assert viewer is not None
            return around_me(ranked_board, viewer.id, limit=limit or AROUND_LIMIT)
        stop = None if limit is None else offset + limit
        data = ranked_board.view(ranked_board.entries(offset, stop))
        return {**data, "total": len(ranked_board), "limit": limit, "offset": offset}

    async def _private_board(
        self, competition_id: int, viewer: Participant | None
    ) -> dict[str, Any]:
        """The private board, once closed (the host sees it before)."""
        if competition_id in self._private:
            return self._private[competition_id]

        def run(session: Session) -> tuple[dict[str, Any], bool]:
            comp = competitions.get(session, competition_id)
            closed = competitions.status(comp, utcnow()) == "closed"
            if not closed and (viewer is None or viewer.id != comp.host_id):
                raise Forbidden(
                    f"the private board of competition {competition_id} is shown after it closes"
                )
            return load_board(session, comp, name="private"), closed

        data, closed = await self.store.tx(run)
        if closed:  # it changes with no event while submissions arrive: kept once closed
            self._private[competition_id] = data
        return data

    async def board_text(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> str:
        """A whole board as JSON text; the public one is encoded once per change."""
        if board != "public":
            return json.dumps(await self.board(competition_id, board=board, viewer=viewer))
        ranked_board = (await self.live.ready(competition_id)).board
        assert ranked_board is not None
        kept = self._texts.get(competition_id)
        if kept is None or kept[0] is not ranked_board or kept[1] != ranked_board.changes:
            data = await self.board(competition_id, board=board, viewer=viewer)
            kept = (ranked_board, ranked_board.changes, json.dumps(data))
            self._texts[competition_id] = kept
        return kept[2]

    async def board_csv(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> str:
        """A board as CSV: one row per entry."""
        return as_csv(await self.board(competition_id, board=board, viewer=viewer))

    async def every(self, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """A page of competitions' boards: the public one, and the private one once closed."""

        def run(session: Session) -> tuple[list[tuple[int, bool]], int]:
            found = competitions.listing(session, kind=None, state=None, now=utcnow())
            now = utcnow()
            page = found[offset : offset + limit]
            return [(c.id, competitions.status(c, now) == "closed") for c in page], len(found)

        page, total = await self.store.tx(run)
        out = []
        for competition_id, closed in page:
            public = await self.board(competition_id, board="public", viewer=None)
            out.append({k: v for k, v in public.items() if k not in PAGE_KEYS})
            if closed:
                out.append(await self.board(competition_id, board="private", viewer=None))
        return {"leaderboards": out, "total": total, "limit": limit, "offset": offset}

    # ------------------------------------------------------------ the live push

    def listen(
        self,
        listener: Listener,
        *,
        competition: int | None = None,
        viewer: int | None = None,
        others: bool = True,
    ) -> Callable[[], None]:
        """Receive every event but the boards' own (those go to `live` watchers), or only one
        competition's; of submission events, everyone's (`others`) or only `viewer`'s own (a
        competition's watchers get others' with the board's pushes); returns the unsubscribe."""
        if competition is None and others:
            self._listeners.add(listener)
            return lambda: self._listeners.discard(listener)
        self._watching.setdefault(competition, set()).add(listener)
        if viewer is not None:
            self._owners.setdefault((competition, viewer), set()).add(listener)

        def unsubscribe() -> None:
            """Stop listening."""
            _discard(self._watching, competition, listener)
            if viewer is not None:
                _discard(self._owners, (competition, viewer), listener)

        return unsubscribe

    def _on_event(self, event: Event) -> None:
        """An event from any process: move or reload the board it changes, drop the caches
        it makes stale, complete it, pass it on."""
        cid = event.competition_id
        if event.type == RESYNC:  # the bus may have missed events: every board may be stale
            self._private.clear()
            self.live.reload_all()
        elif event.type == "competition.deleted":
            self._private.pop(cid, None)
            self.live.drop(cid)
        elif event.type == ENTRY and event.data:
            self._private.pop(cid, None)
            self.live.apply(cid, event.data)
            return
        elif event.type in (ENTRY, "leaderboard.changed"):  # (an entry too large to travel)
            self._private.pop(cid, None)
            self.live.reload(cid)
            return
        if event.type in BATCHED:
            self.live.announce(event)
        if event.type in COMPETITION_EVENTS and not event.data:
            self.tasks.spawn(self._send_competition(event))
            return
        self._emit(event)

    async def _send_competition(self, event: Event) -> None:
        """Send a competition event with the competition's public view."""
        data = await self.competitions.get(event.competition_id)
        self._emit(Event(event.type, event.competition_id, data, event.at))

    def _emit(self, event: Event) -> None:
        """Hand an event to every listener; one failing does not stop the others."""
        for listener in self._listeners_of(event):
            try:
                listener(event)
            except Exception:
                self.log.exception("event listener failed")

    def _listeners_of(self, event: Event) -> list[Listener]:
        """Who hears of an event: listeners of every competition and those of its competition
        (of a submission event: those of everyone's, and its owner's own); all on a resync."""
        cid = event.competition_id
        if event.type == RESYNC:
            return [*self._listeners, *{x for xs in self._watching.values() for x in xs}]
        if event.type in BATCHED:
            owner = owner_id(event) or 0
            mine = [*self._owners.get((None, owner), ()), *self._owners.get((cid, owner), ())]
            return [*self._listeners, *mine]
        return [*self._listeners, *self._watching.get(None, ()), *self._watching.get(cid, ())]

    def close(self) -> None:
        """Stop pushing."""
        self._listeners.clear()
        self._watching.clear()
        self._owners.clear()
        self.live.close()
        self.tasks.cancel()


PAGE_MOST = 10_000  # entries in one page of a board, at most
AROUND_LIMIT = 21  # entries around the caller's, unless `limit` says
PAGE_KEYS = ("total", "limit", "offset")


def paged(board: dict[str, Any], *, limit: int | None, offset: int) -> dict[str, Any]:
    """A page of a board read whole."""
    entries = board["entries"]
    stop = None if limit is None else offset + limit
    page = {"entries": entries[offset:stop], "total": len(entries)}
    return {**board, **page, "limit": limit, "offset": offset}


def around_mine(board: dict[str, Any], viewer_id: int, *, limit: int) -> dict[str, Any]:
    """`around_me` for a board read whole (the private one)."""
    entries = board["entries"]
    mine = [
        i
        for i, e in enumerate(entries)
        if viewer_id == e["participant"]["id"]
        or viewer_id in {m["id"] for m in (e["team"] or {}).get("members", [])}
    ]
    if not mine:
        page: dict[str, Any] = {"entries": [], "me": None, "total": len(entries), "limit": limit}
        return {**board, **page, "offset": 0}
    start = max(0, min(mine[0] - limit // 2, len(entries) - limit))
    found = paged(board, limit=limit, offset=start)
    return {**found, "me": entries[mine[0]]}


def around_me(board: RankedBoard, viewer_id: int, *, limit: int) -> dict[str, Any]:
    """`limit` entries centred on the viewer's (or their team's) entry, and that entry as
    `me` (none: no entries and `me` null)."""
    mine = board.entry_of(viewer_id)
    total = len(board)
    if mine is None:
        return {**board.view([]), "me": None, "total": total, "limit": limit, "offset": 0}
    start = max(0, min(board.position(mine) - limit // 2, total - limit))
    entries = board.entries(start, start + limit)
    me = next(e for e in entries if e["participant"]["id"] == mine.participant_id)
    return {**board.view(entries), "me": me, "total": total, "limit": limit, "offset": start}
