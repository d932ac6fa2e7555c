"""Each manager in-process, on an in-memory SQLite database with the in-process event bus:
no server, no sockets, milliseconds each. The end-to-end suites test the same over HTTP."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from crowdsource.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidSubmission,
    NotFound,
    Unauthorized,
)
from crowdsource.frames import to_parquet
from crowdsource.server.events import Event, EventBus
from crowdsource.server.live import BATCHED
from crowdsource.server.managers import Managers
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage.engine import migrate
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import Participant
from crowdsource.times import iso, utcnow
from tests.support import run

PARQUET = "application/vnd.apache.parquet"
IDS = list(range(1, 11))
DATASET = pd.DataFrame({"id": IDS, "x": [i / 10 for i in IDS]})
ANSWER = pd.DataFrame({"id": IDS, "label": ["a" if i % 2 else "b" for i in IDS]})


def split(df: pd.DataFrame) -> dict[str, Any]:
    """A frame in the JSON split form."""
    return dict(json.loads(df.to_json(orient="split", index=False)))


def request(body: dict[str, Any]) -> bytes:
    """A hosting request body, as JSON."""
    return json.dumps(body).encode()


class World:
    """The managers, and every event their bus delivered."""

    def __init__(self, managers: Managers) -> None:
        self.m = managers
        self.events: list[Event] = []
        self._arrived = asyncio.Event()
        managers.bus.subscribe(self._record)

    def _record(self, event: Event) -> None:
        self.events.append(event)
        self._arrived.set()

    def kinds(self) -> list[str]:
        """The types of the events so far."""
        return [e.type for e in self.events]

    async def until(self, kind: str, timeout: float = 30.0) -> Event:
        """Wait for an event of `kind` (pushed, not polled)."""
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.events if e.type == kind]
                if found:
                    return found[-1]
                self._arrived.clear()
                await self._arrived.wait()

    async def person(self, name: str) -> Participant:
        """Register and authenticate a participant."""
        data = await self.m.participants.register(name)
        return await self.m.participants.authenticate(data["token"])

    async def host(self, host: Participant, **spec: Any) -> dict[str, Any]:
        """Host a small classify competition."""
        body = {"title": "t", "type": "classify", "targets": ["label"], "metric": "accuracy"}
        body.update(dataset=split(DATASET), answer=split(ANSWER), **spec)
        return await self.m.competitions.host(host, request(body), "application/json")

    async def submit(
        self, who: Participant, cid: int, labels: list[str], **kw: Any
    ) -> tuple[dict[str, Any], bool]:
        """Submit labels for the ids, in reverse row order (alignment is by id)."""
        frame = pd.DataFrame({"id": IDS, "label": labels}).iloc[::-1]
        options = {"key": None, "wait": True, **kw}
        return await self.m.submissions.submit(cid, who, to_parquet(frame), PARQUET, **options)


@asynccontextmanager
async def world() -> AsyncIterator[World]:
    """Managers over a fresh in-memory database."""
    store = Store(db=":memory:")
    migrate(store.engine)
    managers = Managers.build(
        store=store, bus=EventBus(), workers=Workers(backend="thread"), secret=b"s" * 32
    )
    try:
        yield World(managers)
    finally:
        for manager in (managers.submissions, managers.competitions, managers.leaderboards):
            await manager.tasks.drain()
        managers.close()


def scenario(fn: Callable[[World], Awaitable[None]]) -> Callable[[], None]:
    """A test body run on its own loop, in a fresh world."""

    def test() -> None:
        async def body() -> None:
            async with world() as w:
                await fn(w)

        run(body())

    test.__doc__ = fn.__doc__
    return test


# -- participants -----------------------------------------------------------------------------


@scenario
async def test_register_then_authenticate(w: World) -> None:
    """A token names its participant; a name is taken once; a bad token is refused."""
    data = await w.m.participants.register("ann")
    assert data["token"].startswith("cs_")
    assert (await w.m.participants.authenticate(data["token"])).name == "ann"
    with pytest.raises(Conflict):
        await w.m.participants.register("ann")
    with pytest.raises(Unauthorized):
        await w.m.participants.authenticate("cs_nope")
    assert [p["name"] for p in await w.m.participants.listing()] == ["ann"]


@scenario
async def test_tokens_are_cached_after_the_first_lookup(w: World) -> None:
    """A second authentication reads no database."""
    token = (await w.m.participants.register("bo"))["token"]
    await w.m.participants.authenticate(token)
    w.m.store.engine.dispose()
    calls: list[int] = []
    original = w.m.store.tx

    async def counting(*args: Any) -> Any:
        calls.append(1)
        return await original(*args)

    w.m.store.tx = counting  # type: ignore[method-assign]
    await w.m.participants.authenticate(token)
    assert calls == []


# -- competitions ------------------------------------------------------------------------------


@scenario
async def test_host_publishes_and_lists(w: World) -> None:
    """Hosting stores the competition, announces it, and lists it."""
    host = await w.person("host")
    comp = await w.host(host)
    assert (await w.until("competition.created")).data["id"] == comp["id"]
    listed = await w.m.competitions.listing(kind="classify", state="open")
    assert [c["id"] for c in listed] == [comp["id"]]
    assert await w.m.competitions.listing(kind="regress", state=None) == []
    with pytest.raises(BadRequest):
        await w.m.competitions.listing(kind="poetry", state=None)
    assert (await w.m.competitions.get(comp["id"]))["rows"] == len(DATASET)
    with pytest.raises(NotFound):
        await w.m.competitions.get(10**6)


@scenario
async def test_dataset_is_served_from_memory(w: World) -> None:
    """A small dataset read after hosting comes from the cache, not the database."""
    comp = await w.host(await w.person("host"))
    w.m.store.engine.dispose()
    data = await w.m.competitions.dataset(comp["id"])
    assert pd.read_parquet(__import__("io").BytesIO(data)).equals(DATASET)


@scenario
async def test_only_the_host_sees_the_answer_and_closes(w: World) -> None:
    """The answer and closing are the host's; closing is announced once."""
    host, other = await w.person("host"), await w.person("other")
    comp = await w.host(host)
    with pytest.raises(Forbidden):
        await w.m.competitions.answer(comp["id"], other)
    with pytest.raises(Forbidden):
        await w.m.competitions.close_now(comp["id"], other)
    assert len(await w.m.competitions.answer(comp["id"], host)) > 0
    assert (await w.m.competitions.close_now(comp["id"], host))["status"] == "closed"
    await w.m.competitions.close_now(comp["id"], host)
    assert w.kinds().count("competition.closed") == 1


@scenario
async def test_a_close_time_fires_its_timer(w: World) -> None:
    """A competition closing soon is announced when the time comes (a timer, not a poll)."""
    closes = iso(utcnow() + timedelta(seconds=0.3))
    comp = await w.host(await w.person("host"), closes_at=closes)
    assert (await w.until("competition.closed")).competition_id == comp["id"]


@scenario
async def test_recover_sets_timers_for_closes_not_announced(w: World) -> None:
    """After a start, every pending close has its timer again."""
    closes = iso(utcnow() + timedelta(seconds=0.3))
    comp = await w.host(await w.person("host"), closes_at=closes)
    w.m.competitions.close()  # as if the process stopped before the close
    await w.m.competitions.recover()
    assert (await w.until("competition.closed")).competition_id == comp["id"]


# -- submissions -------------------------------------------------------------------------------


@scenario
async def test_submit_scores_aligned_by_id_and_announces(w: World) -> None:
    """A submission in shuffled row order is scored by id; its score and the board change
    are announced."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    data, new = await w.submit(ann, comp["id"], list(ANSWER["label"]))
    assert new and data["state"] == "scored" and data["public_score"] == 1.0
    assert (await w.until("submission.scored")).data["submission_id"] == data["id"]
    entry = (await w.until("leaderboard.entry")).data
    assert (entry["participant_id"], entry["score"], entry["submissions"]) == (ann.id, 1.0, 1)


@scenario
async def test_an_idempotency_key_returns_the_first_submission(w: World) -> None:
    """The same key twice: one submission, the second answer says it is not new."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    first, new = await w.submit(ann, comp["id"], ["a"] * 10, key="k-1")
    again, new_again = await w.submit(ann, comp["id"], ["a"] * 10, key="k-1")
    assert new and not new_again and again["id"] == first["id"]
    assert len(await w.m.submissions.mine(ann, comp["id"])) == 1


@scenario
async def test_an_invalid_submission_is_refused_and_stores_nothing(w: World) -> None:
    """Missing ids are named; nothing is recorded."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    short = pd.DataFrame({"id": IDS[:5], "label": ["a"] * 5})
    with pytest.raises(InvalidSubmission, match="missing"):
        await w.m.submissions.submit(
            comp["id"],
            ann,
            to_parquet(short),
            PARQUET,
            key=None,
            wait=True,
        )
    assert await w.m.submissions.mine(ann) == []


@scenario
async def test_wait_false_is_pending_then_scored(w: World) -> None:
    """`wait=False` acknowledges at once and scores in the background."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    data, new = await w.submit(ann, comp["id"], ["a"] * 10, wait=False)
    assert new and data["state"] == "pending"
    await w.until("submission.scored")
    assert (await w.m.submissions.get(data["id"], ann))["state"] == "scored"


@scenario
async def test_recover_scores_what_was_pending(w: World) -> None:
    """A submission acknowledged but not scored before a stop is scored by recover()."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    w.m.submissions.tasks.spawn = lambda coro: coro.close()  # type: ignore[method-assign]
    data, _ = await w.submit(ann, comp["id"], ["a"] * 10, wait=False)
    assert (await w.m.submissions.get(data["id"], ann))["state"] == "pending"
    await w.m.submissions.recover()
    assert (await w.m.submissions.get(data["id"], ann))["state"] == "scored"


@scenario
async def test_submissions_are_private_to_owner_and_host(w: World) -> None:
    """The owner and the host read a submission; others do not; predictions are the owner's,
    and the host's once the competition closes."""
    host = await w.person("host")
    comp = await w.host(host)
    ann, bob = await w.person("ann"), await w.person("bob")
    data, _ = await w.submit(ann, comp["id"], ["a"] * 10)
    assert (await w.m.submissions.get(data["id"], host))["id"] == data["id"]
    with pytest.raises(NotFound):
        await w.m.submissions.get(data["id"], bob)
    assert await w.m.submissions.predictions(data["id"], ann)
    with pytest.raises(Forbidden):
        await w.m.submissions.predictions(data["id"], host)
    with pytest.raises(NotFound):
        await w.m.submissions.predictions(data["id"], bob)
    await w.m.competitions.close_now(comp["id"], host)
    assert await w.m.submissions.predictions(data["id"], host)


@scenario
async def test_resolve_rescores_a_predict_round(w: World) -> None:
    """A predict round without answer: submissions wait, then answer rows re-score them."""
    host = await w.person("host")
    body = {"title": "future", "type": "predict", "targets": ["value"]}
    body["dataset"] = split(pd.DataFrame({"id": IDS, "day": IDS}))
    comp = await w.m.competitions.host(host, request(body), "application/json")
    ann = await w.person("ann")
    guess = pd.DataFrame({"id": IDS, "value": [1.0] * 10})
    data, _ = await w.m.submissions.submit(
        comp["id"], ann, to_parquet(guess), PARQUET, key=None, wait=True
    )
    assert data["state"] == "awaiting_answer"
    truth = to_parquet(pd.DataFrame({"id": [1, 2], "value": [1.0, 3.0]}))
    result = await w.m.submissions.resolve(comp["id"], host, truth, PARQUET)
    assert result == {"answer_rows": 2, "rescored": 1}
    assert (await w.m.submissions.get(data["id"], ann))["state"] == "scored"
    assert (await w.until("competition.resolved")).data["rescored"] == 1


# -- leaderboards ------------------------------------------------------------------------------


@scenario
async def test_board_ranks_and_its_cache_follows_changes(w: World) -> None:
    """The board ranks by score; a new score empties the cached board."""
    comp = await w.host(await w.person("host"))
    ann, bob = await w.person("ann"), await w.person("bob")
    await w.submit(ann, comp["id"], list(ANSWER["label"]))
    await w.until("leaderboard.entry")
    board = await w.m.leaderboards.board(comp["id"], board="public", viewer=None)
    assert [e["participant"]["name"] for e in board["entries"]] == ["ann"]
    w.events.clear()
    await w.submit(bob, comp["id"], ["a"] * 10)
    await w.until("leaderboard.entry")
    board = await w.m.leaderboards.board(comp["id"], board="public", viewer=None)
    assert [(e["rank"], e["participant"]["name"]) for e in board["entries"]] == [
        (1, "ann"),
        (2, "bob"),
    ]


class Watching:
    """A live-board watcher that keeps the frames it is sent."""

    def __init__(self, viewer_id: int | None = None, others: bool = True) -> None:
        self.viewer_id, self.others = viewer_id, others
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    def write_frames(self, frames: bytes) -> None:
        """Take WebSocket text frames (a server's: unmasked)."""
        at = 0
        while at < len(frames):
            size, at = frames[at + 1], at + 2
            if size >= 126:
                width = 2 if size == 126 else 8
                size, at = int.from_bytes(frames[at : at + width], "big"), at + width
            self.frames.append(json.loads(frames[at : at + size]))
            at += size
        self._arrived.set()

    async def until(self, kind: str) -> dict[str, Any]:
        """The data of the first frame of `kind` (pushed, not polled)."""
        async with asyncio.timeout(30):
            while not any(f["type"] == kind for f in self.frames):
                self._arrived.clear()
                await self._arrived.wait()
        return next(f["data"] for f in self.frames if f["type"] == kind)


@scenario
async def test_watchers_get_a_snapshot_then_deltas_and_their_own_place(w: World) -> None:
    """A watcher gets the board's snapshot, then a delta with the entries that changed; an
    authenticated one also its own place."""
    comp = await w.host(await w.person("host"))
    ann = await w.person("ann")
    watcher = Watching(viewer_id=ann.id)
    await w.m.leaderboards.live.watch(comp["id"], watcher)
    snapshot = await watcher.until("leaderboard.snapshot")
    assert (snapshot["entries"], snapshot["total"], snapshot["limit"]) == ([], 0, 100)
    await w.submit(ann, comp["id"], ["a"] * 10)
    delta = await watcher.until("leaderboard.delta")
    assert delta["previous"] == snapshot["version"] and delta["total"] == 1
    assert delta["entries"][0]["participant"]["name"] == "ann"
    you = [f["data"] for f in watcher.frames if f["type"] == "leaderboard.you"]
    assert (you[0]["rank"], you[-1]["rank"], you[-1]["total"]) == (None, 1, 1)


@scenario
async def test_each_listener_hears_what_its_filter_lets_through(w: World) -> None:
    """Random listeners (of every competition or of one, with or without a participant, of
    everyone's submissions or their own) and random events: each hears exactly what the event
    stream's filter lets through (one competition's; of submission events, its own alone
    unless it listens to every competition and everyone's; a resync always), and one that
    stopped hears nothing more."""
    rng = random.Random(12)
    kinds = ["submission.scored", "submission.failed", "competition.updated", "hello"]
    heard: dict[int, list[Event]] = {}
    filters: dict[int, tuple[int | None, int | None]] = {}
    stops = []
    for n in range(60):
        competition, others = rng.choice([None, 1, 2, 3]), rng.random() < 0.5
        viewer = rng.choice([None, 7, 8])
        filters[n] = (competition, viewer, others)
        stops.append(
            w.m.leaderboards.listen(
                lambda e, n=n: heard.setdefault(n, []).append(e),
                competition=competition,
                viewer=viewer,
                others=others,
            )
        )
    stopped = set(rng.sample(range(60), 15))
    sent: list[Event] = []
    for step in range(400):
        if step == 200:
            for n in stopped:
                stops[n]()
        kind = rng.choice(kinds)
        who = {"participant": {"id": rng.choice([7, 8, 9]), "name": "p"}}
        data = who if kind.startswith("submission.") else {"id": 1, "title": "t"}
        event = Event(kind, rng.choice([1, 2, 3]), data if kind != "hello" else {})
        sent.append(event)
        w.m.leaderboards._on_event(event)

    def lets_through(n: int, event: Event) -> bool:
        competition, viewer, others = filters[n]
        if event.type == "hello" or (competition is None and others):
            return True
        if competition is not None and event.competition_id != competition:
            return False
        return event.type not in BATCHED or event.data["participant"]["id"] == viewer

    for n in filters:
        live = range(200) if n in stopped else range(len(sent))
        expected = [e for i, e in enumerate(sent) if lets_through(n, e) and i in live]
        assert [e.type for e in heard.get(n, [])] == [e.type for e in expected], filters[n]
        assert heard.get(n, []) == expected


@scenario
async def test_standings_are_computed_once_for_many_readers_and_never_stale(w: World) -> None:
    """Many reads at once share one computation; a read after a change sees it (waiting for
    the next computation, at most one per `every` seconds, rather than reading an old one)."""
    standings = w.m.standings
    standings.every = 0.2
    computed = 0
    compute = standings._compute

    async def counted(kind: str) -> dict[str, Any]:
        nonlocal computed
        computed += 1
        return await compute(kind)

    standings._compute = counted  # type: ignore[method-assign]
    comp = await w.host(await w.person("host"))
    await w.submit(await w.person("ann"), comp["id"], ["a"] * 10)
    await asyncio.sleep(0)  # the bus delivers on the next turn of the loop
    reads = await asyncio.gather(*(standings.standings("classify") for _ in range(50)))
    assert computed == 1 and all(r == reads[0] for r in reads)
    assert [p["participant"]["name"] for p in reads[0]["participants"]] == ["ann"]
    for n, name in enumerate(["bob", "cy", "di", "ed"], start=2):
        await w.submit(await w.person(name), comp["id"], ["a"] * 10)
        await asyncio.sleep(0)
        reads = await asyncio.gather(*(standings.standings("classify") for _ in range(20)))
        assert all(r["participants_total"] == n for r in reads), n
    assert computed == 5
    page = await standings.standings("classify", limit=2, offset=1)
    assert [p["participant"]["name"] for p in page["participants"]] == ["bob", "cy"]
    assert (page["participants_total"], computed) == (5, 5)


@scenario
async def test_private_board_waits_for_the_close(w: World) -> None:
    """Before the close only the host sees the private board; after, everyone."""
    host = await w.person("host")
    comp = await w.host(host, public_fraction=0.5)
    with pytest.raises(Forbidden):
        await w.m.leaderboards.board(comp["id"], board="private", viewer=None)
    await w.m.leaderboards.board(comp["id"], board="private", viewer=host)
    await w.m.competitions.close_now(comp["id"], host)
    await w.m.leaderboards.board(comp["id"], board="private", viewer=None)
    boards = await w.m.leaderboards.every()
    assert [b["board"] for b in boards["leaderboards"]] == ["public", "private"]
    with pytest.raises(BadRequest):
        await w.m.leaderboards.board(comp["id"], board="secret", viewer=None)


# -- composition -------------------------------------------------------------------------------


class RecordingBus(EventBus):
    """An operator's own bus: a Type trait picks it."""


def test_the_event_bus_is_a_type_trait() -> None:
    """`--CrowdsourceServer.event_bus_class` swaps the bus; by default the database picks."""
    from crowdsource.server.app import CrowdsourceServer

    async def body() -> None:
        store = Store(db=":memory:")
        try:
            app = CrowdsourceServer()
            assert type(app._bus(store)) is EventBus
            app.event_bus_class = RecordingBus
            assert isinstance(app._bus(store), RecordingBus)
        finally:
            store.close()

    run(body())


@scenario
async def test_a_close_that_finds_the_database_away_is_tried_again(w: World) -> None:
    """The close timer fires during an outage: the close is announced once the database is
    back, not forgotten until a restart."""
    from sqlalchemy.exc import OperationalError

    from crowdsource.server import competitions

    host = await w.person("host")
    comp = await w.host(host, closes_at=iso(utcnow() + timedelta(seconds=0.2)))
    original, failures = w.m.store.tx, [1]

    async def flaky(*args: Any) -> Any:
        if failures:
            failures.pop()
            raise OperationalError("SELECT 1", {}, Exception("the database went away"))
        return await original(*args)

    w.m.store.tx = flaky  # type: ignore[method-assign]
    retry = competitions.CLOSE_RETRY_SECONDS
    competitions.CLOSE_RETRY_SECONDS = 0.1
    try:
        assert (await w.until("competition.closed")).competition_id == comp["id"]
    finally:
        competitions.CLOSE_RETRY_SECONDS = retry
    assert not failures


@scenario
async def test_answer_rows_added_at_once_are_all_kept(w: World) -> None:
    """Rows are merged outside any transaction and stored only if no other answer came
    meanwhile (else merged again): eight additions at once keep every row."""
    host = await w.person("host")
    body = {"title": "future", "type": "predict", "targets": ["value"]}
    body["dataset"] = split(pd.DataFrame({"id": range(1, 41), "day": range(40)}))
    comp = await w.m.competitions.host(host, request(body), "application/json")

    async def add(k: int) -> None:
        rows = pd.DataFrame({"id": range(5 * k + 1, 5 * k + 6), "value": [float(k)] * 5})
        await w.m.competitions.add_rows(comp["id"], host, to_parquet(rows), PARQUET)

    await asyncio.gather(*(add(k) for k in range(8)))
    answer = pd.read_parquet(
        __import__("io").BytesIO(await w.m.competitions.answer(comp["id"], host))
    )
    assert sorted(answer["id"]) == list(range(1, 41))
