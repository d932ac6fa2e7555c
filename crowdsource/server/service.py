"""The service: every use case of the server as one async facade over the store, the scoring
workers and the event bus. It knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import update
from sqlalchemy.orm import Session

from crowdsource import frames
from crowdsource.errors import BadRequest, Forbidden, NotFound
from crowdsource.server import competitions, leaderboards, participants, submissions
from crowdsource.server.events import (
    Event,
    EventBus,
    PostgresEventBus,
    SocketEventBus,
    peers_folder,
)
from crowdsource.server.scoring import score as scoring
from crowdsource.server.scoring import workers as jobs
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage import blobs
from crowdsource.server.storage.engine import database_url, make_engine, migrate, session_factory
from crowdsource.server.storage.groupcommit import GroupCommit
from crowdsource.server.storage.tables import Competition, Participant, Submission
from crowdsource.times import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")
Listener = Callable[[Event], None]
DATASETS_KEPT, DATASET_KEPT_BYTES = 64, 1 << 20  # small datasets served from memory
BODY_BYTES_PER_ROW = 16  # a submission's Parquet size per row, roughly: it picks where to score


class Service:
    """Participants, competitions, submissions and leaderboards, with live events, over a
    database that `prepare_database` has made ready (once, before any server process)."""

    def __init__(
        self,
        *,
        db: str,
        secret: bytes,
        workers: Workers,
        sqlite_synchronous: str = "NORMAL",
        peers: bool = False,
    ) -> None:
        self.db_url = database_url(db)
        self.engine = make_engine(self.db_url, synchronous=sqlite_synchronous)
        self.sessions = session_factory(self.engine)
        self.secret = secret
        self.workers = workers
        self._threads = ThreadPoolExecutor(8, thread_name_prefix="crowdsource-db")
        self.writer = GroupCommit(self.sessions)  # submissions: scored, then group-committed
        self.bus = self._bus(peers=peers)
        self.bus.subscribe(self._on_event)
        self._listeners: set[Listener] = set()
        self._boards: dict[tuple[int, str], dict[str, Any]] = {}
        self._board_texts: dict[tuple[int, str], str] = {}
        self._board_changes: dict[int, int] = {}  # a read caches only if none came meanwhile
        self._hydrating: dict[int, bool] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self._specs: dict[int, scoring.Spec] = {}
        self._comps: dict[int, Competition] = {}  # checked against the database on each use
        self._tokens: dict[str, Participant] = {}
        self._datasets: OrderedDict[int, bytes] = OrderedDict()  # small ones; they never change

    # ------------------------------------------------------------ plumbing

    def _bus(self, *, peers: bool) -> EventBus:
        """Events for this process, and for its peers (other server processes) if any."""
        if self.engine.dialect.name == "postgresql":
            return PostgresEventBus(_libpq_dsn(self.db_url))
        return SocketEventBus(peers_folder(self.db_url)) if peers else EventBus()

    def _tx_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(session, *args)` in one transaction, here."""
        with self.sessions.begin() as session:
            return fn(session, *args)

    async def _in_thread(self, fn: Callable[[], T]) -> T:
        """Run `fn()` on a database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn)

    async def tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(session, *args)` in one transaction on a database thread."""
        return await self._in_thread(lambda: self._tx_sync(fn, *args))

    async def _spec(self, competition_id: int) -> scoring.Spec:
        """A competition's scoring spec, cached until its answer changes."""
        spec = self._specs.get(competition_id)
        if spec is None:
            spec = await self.tx(lambda s: competitions.spec(competitions.get(s, competition_id)))
            self._specs[competition_id] = spec
        return spec

    def _precheck(
        self, session: Session, competition_id: int, participant: Participant, key: str | None
    ) -> dict[str, Any] | None:
        """Before costly work: the submission a key already made, or the open and quota rules."""
        comp = competitions.get(session, competition_id)
        existing = submissions.by_key(session, participant, key)
        if existing is not None:
            return self._sub_json(session, existing)
        submissions.check_open(comp, participant, utcnow())
        submissions.check_quota(session, comp, participant, utcnow())
        return None

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a background task, keeping a reference and logging its failure."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Future[Any]) -> None:
        """Forget a finished task; log what it raised."""
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive every event, leaderboard ones carrying the board; returns the unsubscribe."""
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def _publish(self, kind: str, competition_id: int, **data: Any) -> None:
        """Announce a committed change."""
        if kind == "leaderboard.changed":
            self._forget(competition_id)
        self.bus.publish(Event(kind, competition_id, data))

    def _forget(self, competition_id: int) -> None:
        """Drop cached boards of a competition."""
        self._board_changes[competition_id] = self._board_changes.get(competition_id, 0) + 1
        for board in leaderboards.BOARDS:
            self._boards.pop((competition_id, board), None)
            self._board_texts.pop((competition_id, board), None)

    def _on_event(self, event: Event) -> None:
        """Hydrate events from any process and pass them to listeners."""
        if event.type == "competition.resolved":
            self._specs.pop(event.competition_id, None)
        if event.type == "leaderboard.changed":
            self._forget(event.competition_id)
            if not self._listeners:
                return
            if event.competition_id in self._hydrating:
                self._hydrating[event.competition_id] = True
            else:
                self._hydrating[event.competition_id] = False
                self._spawn(self._send_board(event))
            return
        if event.type in ("competition.created", "competition.closed") and not event.data:
            self._spawn(self._send_competition(event))
            return
        self._emit(event)

    async def _send_board(self, event: Event) -> None:
        """Send the fresh board; coalesce changes that arrive meanwhile into one more send."""
        try:
            while True:
                self._hydrating[event.competition_id] = False
                board = await self.leaderboard(event.competition_id, board="public", viewer=None)
                self._emit(Event(event.type, event.competition_id, board, event.at))
                if not self._hydrating[event.competition_id]:
                    return
        except Exception:
            log.exception("could not load leaderboard %s", event.competition_id)
        finally:
            self._hydrating.pop(event.competition_id, None)

    async def _send_competition(self, event: Event) -> None:
        """Send a competition event with the competition's public view."""
        data = await self.competition(event.competition_id)
        self._emit(Event(event.type, event.competition_id, data, event.at))

    def _emit(self, event: Event) -> None:
        """Hand an event to every listener."""
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed")

    def close(self) -> None:
        """Release pools, connections and the bus."""
        self.bus.close()
        self.workers.close()
        self.writer.close()
        self._threads.shutdown(wait=False)
        self.engine.dispose()

    # ------------------------------------------------------------ participants

    async def authenticate(self, token: str) -> Participant:
        """The participant a token belongs to (cached: participants never change)."""
        digest = participants.hash_token(token, secret=self.secret)
        found = self._tokens.get(digest)
        if found is None:
            found = await self.tx(
                lambda s: participants.authenticate(s, token=token, secret=self.secret)
            )
            if len(self._tokens) > 100_000:
                self._tokens.clear()
            self._tokens[digest] = found
        return found

    async def register(self, name: Any) -> dict[str, Any]:
        """Register a participant; the answer holds the token, once."""

        def run(session: Session) -> dict[str, Any]:
            participant, token = participants.register(session, name=name, secret=self.secret)
            return {**participants.as_json(participant), "token": token}

        return await self.tx(run)

    async def participants(self) -> list[dict[str, Any]]:
        """Every participant."""
        return await self.tx(lambda s: [participants.as_json(p) for p in participants.listing(s)])

    # ------------------------------------------------------------ competitions

    def _comp_json(self, session: Session, comp: Competition) -> dict[str, Any]:
        """A competition's public view."""
        host = session.get_one(Participant, comp.host_id)
        return competitions.as_json(comp, host, utcnow())

    async def host(self, host: Participant, body: Any) -> dict[str, Any]:
        """Host a competition from a checked spec."""
        loop = asyncio.get_running_loop()
        hosting = await loop.run_in_executor(self._threads, competitions.check, body)

        def run(session: Session) -> tuple[dict[str, Any], scoring.Spec, scoring.Prepared]:
            comp, prepared = competitions.create(session, host=host, hosting=hosting, now=utcnow())
            return self._comp_json(session, comp), competitions.spec(comp), prepared

        data, spec, prepared = await self.tx(run)
        self._specs[data["id"]] = spec
        self._keep_dataset(data["id"], hosting.dataset_parquet)
        if self.workers.in_process(data["rows"] * BODY_BYTES_PER_ROW):
            jobs.CACHE.put(self.db_url, spec, prepared)  # its submissions score here
        else:
            self._spawn(self._preload(data["id"], rows=data["rows"]))
        self._schedule_close(data["id"], data["closes_at"])
        self._publish("competition.created", data["id"], **data)
        return data

    async def _preload(self, competition_id: int, *, rows: int) -> None:
        """Load the answer where its submissions will be scored, before the first arrives."""
        spec = await self._spec(competition_id)
        await self.workers.run(rows * BODY_BYTES_PER_ROW, jobs.preload, self.db_url, spec)

    async def competitions(self, *, kind: str | None, state: str | None) -> list[dict[str, Any]]:
        """Competitions, newest first."""
        return await self.tx(
            lambda s: [
                self._comp_json(s, c)
                for c in competitions.listing(s, kind=kind, state=state, now=utcnow())
            ]
        )

    async def competition(self, competition_id: int) -> dict[str, Any]:
        """One competition's public view."""
        return await self.tx(lambda s: self._comp_json(s, competitions.get(s, competition_id)))

    async def dataset(self, competition_id: int) -> bytes:
        """The dataset participants see, as Parquet (small ones from memory: every competitor
        fetches it the moment a competition is posted)."""
        data = self._datasets.get(competition_id)
        if data is None:
            data = await self.tx(
                lambda s: competitions.blob(s, competitions.get(s, competition_id).dataset_blob_id)
            )
            self._keep_dataset(competition_id, data)
        return data

    def _keep_dataset(self, competition_id: int, data: bytes) -> None:
        """Remember a small dataset, forgetting the oldest beyond DATASETS_KEPT."""
        if len(data) <= DATASET_KEPT_BYTES:
            self._datasets[competition_id] = data
            while len(self._datasets) > DATASETS_KEPT:
                self._datasets.popitem(last=False)

    async def answer(self, competition_id: int, viewer: Participant) -> bytes:
        """The answer rows known so far, for the host only."""
        return await self.tx(
            lambda s: competitions.blob(
                s, competitions.hosted(s, competition_id, viewer).answer_blob_id
            )
        )

    async def close_now(self, competition_id: int, viewer: Participant) -> dict[str, Any]:
        """Close a competition now (host only)."""

        def run(session: Session) -> None:
            comp = competitions.hosted(session, competition_id, viewer)
            now = utcnow()
            if competitions.status(comp, now) != "closed":
                comp.closes_at = now

        await self.tx(run)
        await self._announce_close(competition_id)
        return await self.competition(competition_id)

    def _schedule_close(self, competition_id: int, closes_at: str | None) -> None:
        """Announce the close when the time comes (a timer for that moment, not a poll)."""
        if closes_at is None:
            return
        delay = (datetime.fromisoformat(closes_at) - utcnow()).total_seconds()
        loop = asyncio.get_running_loop()
        loop.call_later(
            max(delay, 0) + 0.01,
            lambda: self._spawn(self._announce_close(competition_id)),
        )

    async def _announce_close(self, competition_id: int) -> None:
        """Publish `competition.closed` once, whichever process gets there first."""

        def run(session: Session) -> bool:
            done = session.execute(
                update(Competition)
                .where(
                    Competition.id == competition_id,
                    ~Competition.closed_announced,
                    Competition.closes_at <= utcnow(),
                )
                .values(closed_announced=True)
            )
            return bool(getattr(done, "rowcount", 0))

        if await self.tx(run):
            self._publish("competition.closed", competition_id)
            self._publish("leaderboard.changed", competition_id)

    async def add_answer(
        self, competition_id: int, viewer: Participant, body: bytes, content_type: str | None
    ) -> dict[str, Any]:
        """Add answer rows (host only) and re-score every submission against them."""
        loop = asyncio.get_running_loop()
        rows = await loop.run_in_executor(
            self._threads, lambda: frames.decode_body(body, content_type, key="rows")
        )

        def run(session: Session) -> tuple[int, scoring.Spec]:
            comp = competitions.hosted(session, competition_id, viewer)
            count = competitions.add_answer_rows(session, comp, rows)
            return count, competitions.spec(comp)

        count, spec = await self.tx(run)
        self._specs.pop(competition_id, None)
        rescored = await self._rescore(competition_id, spec)
        if not rescored:
            await self._preload(competition_id, rows=count)
        self._publish("competition.resolved", competition_id, answer_rows=count, rescored=rescored)
        self._publish("leaderboard.changed", competition_id)
        return {"answer_rows": count, "rescored": rescored}

    async def _rescore(self, competition_id: int, spec: scoring.Spec) -> int:
        """Score every live submission of a competition again; rebuild its boards."""
        subs = await self.tx(
            lambda s: [
                (sub.id, competitions.blob(s, sub.predictions_blob_id))
                for sub in s.query(Submission).filter(
                    Submission.competition_id == competition_id, Submission.state != "failed"
                )
            ]
        )
        results: list[tuple[int, scoring.Scored | str]] = []
        for sub_id, data in subs:
            try:
                outcome: scoring.Scored | str = await self.workers.run(
                    len(data), jobs.rescore, self.db_url, spec, data
                )
            except Exception as exc:  # this submission fails; the others are still scored
                outcome = jobs.failure(exc)
            results.append((sub_id, outcome))

        def run(session: Session) -> None:
            comp = competitions.get(session, competition_id)
            now = utcnow()
            for sub_id, scored in results:
                sub = session.get_one(Submission, sub_id)
                if isinstance(scored, str):
                    submissions.fail(session, comp, sub, scored)
                else:
                    submissions.settle(session, comp, sub, scored, now=now)
            leaderboards.rebuild(session, comp)

        await self.tx(run)
        return len(results)

    # ------------------------------------------------------------ submissions

    async def submit(
        self,
        competition_id: int,
        participant: Participant,
        body: frames.Body,
        content_type: str | None,
        *,
        key: str | None,
        wait: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Validate, score and record a submission. Returns its view and whether it is new.
        A large one is scored and stored by a scoring worker, from its spooled file."""
        key = submissions.check_key(key)
        spec = await self._spec(competition_id)
        big = len(body) > self.workers.inline_bytes
        if big or not wait:
            existing = await self.tx(self._precheck, competition_id, participant, key)
            if existing is not None:
                return existing, False
        if not wait:
            return await self._submit_later(spec, participant, body, content_type, key)

        def record(session: Session, scored: scoring.Scored) -> tuple[dict[str, Any], bool, bool]:
            comp = competitions.current(session, competition_id, self._comps)
            view, new = submissions.record(
                session,
                comp=comp,
                participant=participant,
                scored=scored,
                predictions=scored.blob_id or scored.predictions or frames.as_bytes(body),
                key=key,
                now=utcnow(),
            )
            return view, new, comp.answer_blob_id != spec.answer_blob_id

        if big:
            scored = await self.workers.run(
                len(body),
                jobs.score_and_store,
                self.db_url,
                spec,
                body if self.workers.shares_files else frames.as_bytes(body),
                content_type,
            )
            new = False
            try:
                data, new, stale = await self.writer.run(lambda: scored, record)
            finally:
                if not new and scored.blob_id is not None:  # refused, or made before: unstore
                    await self.tx(blobs.delete_blob, scored.blob_id)
        else:
            data, new, stale = await self.writer.run(
                lambda: jobs.score_body(self.db_url, spec, body, content_type), record
            )

        if new:
            self._announce_scored(data)
        if stale:
            self._spawn(self._rescore(competition_id, spec))
        return data, new

    async def _submit_later(
        self,
        spec: scoring.Spec,
        participant: Participant,
        body: frames.Body,
        content_type: str | None,
        key: str | None,
    ) -> tuple[dict[str, Any], bool]:
        """Store a submission as pending (acknowledged, durable) and score it afterwards."""
        loop = asyncio.get_running_loop()
        frame = await loop.run_in_executor(
            self._threads, lambda: frames.decode_body(body, content_type, key="predictions")
        )
        data = await loop.run_in_executor(self._threads, frames.to_parquet, frame)

        def record(session: Session) -> tuple[dict[str, Any], bool]:
            return submissions.record(
                session,
                comp=competitions.get(session, spec.competition_id),
                participant=participant,
                scored=None,
                predictions=data,
                key=key,
                now=utcnow(),
            )

        view, new = await self.tx(record)
        if new:
            self._spawn(self._finish(view["id"]))
        return view, new

    async def _finish(self, submission_id: int) -> None:
        """Score a pending submission; record the score or the reason it failed."""

        def load(session: Session) -> tuple[scoring.Spec, bytes]:
            sub = submissions.get(session, submission_id)
            comp = competitions.get(session, sub.competition_id)
            return competitions.spec(comp), competitions.blob(session, sub.predictions_blob_id)

        try:  # any fault fails this submission alone, with a reason; none stops a start
            spec, data = await self.tx(load)
            scored: scoring.Scored | None = await self.workers.run(
                len(data), jobs.rescore, self.db_url, spec, data
            )
            reason = None
        except Exception as exc:
            scored, reason = None, jobs.failure(exc)

        def record(session: Session) -> dict[str, Any]:
            sub = submissions.get(session, submission_id)
            comp = competitions.get(session, sub.competition_id)
            if scored is None:
                submissions.fail(session, comp, sub, reason or "could not be scored")
            else:
                submissions.settle(session, comp, sub, scored, now=utcnow())
            return self._sub_json(session, sub)

        view = await self.tx(record)
        self._announce_scored(view)

    def _announce_scored(self, view: dict[str, Any]) -> None:
        """Publish the outcome of a scoring."""
        kind = "submission.failed" if view["state"] == "failed" else "submission.scored"
        self._publish(
            kind,
            view["competition_id"],
            submission_id=view["id"],
            participant=view["participant"],
            state=view["state"],
            public_score=view["public_score"],
            reason=view["reason"],
        )
        if kind == "submission.scored":
            self._publish("leaderboard.changed", view["competition_id"])

    def _sub_json(self, session: Session, sub: Submission) -> dict[str, Any]:
        """A submission's view."""
        comp = session.get_one(Competition, sub.competition_id)
        owner = session.get_one(Participant, sub.participant_id)
        return submissions.as_json(session, sub, comp, owner, utcnow())

    async def submission(self, submission_id: int, viewer: Participant) -> dict[str, Any]:
        """One submission, for its owner or the host."""

        def run(session: Session) -> dict[str, Any]:
            sub = submissions.get(session, submission_id)
            submissions.visible(session, sub, viewer)
            return self._sub_json(session, sub)

        return await self.tx(run)

    async def predictions(self, submission_id: int, viewer: Participant) -> bytes:
        """A submission's predictions, for its owner only."""

        def run(session: Session) -> bytes:
            sub = submissions.get(session, submission_id)
            if sub.participant_id != viewer.id:
                raise NotFound(f"no submission {submission_id} of yours")
            return competitions.blob(session, sub.predictions_blob_id)

        return await self.tx(run)

    async def my_submissions(
        self, viewer: Participant, competition_id: int | None = None
    ) -> list[dict[str, Any]]:
        """A participant's own submissions."""

        def run(session: Session) -> list[dict[str, Any]]:
            if competition_id is not None:
                competitions.get(session, competition_id)
            return [
                self._sub_json(session, s)
                for s in submissions.mine(session, viewer, competition_id)
            ]

        return await self.tx(run)

    async def recover(self, *, rescore: bool = True) -> None:
        """After a start: schedule closes and, with `rescore` (one process of several does
        it), score what was acknowledged but not scored."""
        if rescore:
            for sub_id in await self.tx(lambda s: [sub.id for sub in submissions.pending(s)]):
                try:
                    await self._finish(sub_id)
                except Exception:  # recording the failure failed: leave it pending, go on
                    log.exception("could not finish pending submission %s", sub_id)
        comps = await self.tx(
            lambda s: [
                (c.id, c.closes_at)
                for c in s.query(Competition).filter(~Competition.closed_announced)
            ]
        )
        for cid, closes in comps:
            if closes is not None:
                self._schedule_close(cid, closes.isoformat())

    # ------------------------------------------------------------ leaderboards

    async def leaderboard(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> dict[str, Any]:
        """A board; the private one only for the host, or for anyone after close."""
        if board not in leaderboards.BOARDS:
            raise BadRequest("'board' must be public or private")
        cached = self._boards.get((competition_id, board))
        if cached is not None and board == "public":
            return cached

        def run(session: Session) -> dict[str, Any]:
            comp = competitions.get(session, competition_id)
            closed = competitions.status(comp, utcnow()) == "closed"
            if board == "private" and not closed and (viewer is None or viewer.id != comp.host_id):
                raise Forbidden(
                    f"the private board of competition {competition_id} is shown after it closes"
                )
            return leaderboards.board(session, comp, name=board)

        changes = self._board_changes.get(competition_id, 0)
        data = await self.tx(run)
        if board == "public" and changes == self._board_changes.get(competition_id, 0):
            self._boards[(competition_id, board)] = data
        return data

    async def leaderboard_text(
        self, competition_id: int, *, board: str, viewer: Participant | None
    ) -> str:
        """A board as JSON text; the public one is encoded once per change, not per read."""
        key = (competition_id, board)
        text = self._board_texts.get(key)
        if text is None:
            data = await self.leaderboard(competition_id, board=board, viewer=viewer)
            text = json.dumps(data)
            if board == "public" and self._boards.get(key) is data:
                self._board_texts[key] = text
        return text

    async def leaderboards(self) -> list[dict[str, Any]]:
        """Every competition's public board, and the private one once closed."""

        def run(session: Session) -> list[dict[str, Any]]:
            out = []
            for comp in competitions.listing(session, kind=None, state=None, now=utcnow()):
                out.append(leaderboards.board(session, comp, name="public"))
                if competitions.status(comp, utcnow()) == "closed":
                    out.append(leaderboards.board(session, comp, name="private"))
            return out

        return await self.tx(run)


def _libpq_dsn(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def prepare_database(db: str) -> None:
    """Before any server process serves: create or upgrade the schema and, on SQLite, delete
    predictions stored for submissions a crash kept from being recorded (not on PostgreSQL,
    where a server elsewhere may be between storing and recording)."""
    engine = make_engine(database_url(db))
    try:
        migrate(engine)
        if engine.dialect.name == "sqlite":
            with session_factory(engine).begin() as session:
                dropped = blobs.drop_orphans(session)
            if dropped:
                log.info("deleted %d stored predictions of submissions never recorded", dropped)
    finally:
        engine.dispose()
