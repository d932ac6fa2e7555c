"""Concurrency and lost connections against real servers: no acknowledged answer row or
submission is lost, a taken name is a 409, group commits of two servers never deadlock, and a
server outlives its database connections (PostgreSQL backends terminated under it)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crowdsource.server.events import CHANNEL, RESYNC, Event, PostgresEventBus
from crowdsource.server.storage import locks
from crowdsource.server.storage.engine import make_engine, session_factory
from crowdsource.server.storage.groupcommit import GroupCommit
from tests.api import Api, events_url, read_event, split
from tests.support import PG_ADMIN_URL, ServerProcess, postgres_database, run
from tests.test_writer import run_all

SERVER_FLAGS = ("--write-rate=100000", "--write-burst=100000")
FLOOD = 8  # threads hitting one thing at once


def at_once(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run `fn(i)` on n threads released together; returns their results in order."""
    start = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        start.wait()
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    return results


def predict_round(host: Api, rows: int = 100) -> int:
    """A 'predict' competition posted with no answer yet; returns its id."""
    dataset = {"columns": ["id", "x"], "data": [[i, i] for i in range(rows)]}
    return int(host.host(type="predict", targets=["y"], dataset=dataset)["id"])


@pytest.fixture
def pg() -> Iterator[str]:
    """A throwaway PostgreSQL database for one test."""
    with postgres_database() as url:
        yield url


def admin() -> psycopg.Connection[Any]:
    """A connection to the administration database, beside the test's own."""
    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


def dbname(url: str) -> str:
    """The database name in a URL."""
    return url.rsplit("/", 1)[1]


def terminate_backends(url: str) -> int:
    """Kill every connection to the test's database, as a PostgreSQL restart would."""
    with admin() as conn:
        found = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (dbname(url),),
        ).fetchone()
    return int(found[0]) if found else 0


def listeners(url: str) -> int:
    """How many connections to the test's database are listening for events."""
    with admin() as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN%%'",
            (dbname(url),),
        ).fetchone()
    return int(found[0]) if found else 0


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Wait until `check()` holds (a state to reach, not a time to sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def no_500(server: ServerProcess, *, tracebacks: bool = False) -> None:
    """The server never failed a request nor logged a deadlock (nor, unless `tracebacks`,
    any fault: with connections killed, a background read may fail and is logged)."""
    text = server.log.read_text()
    assert "deadlock detected" not in text
    assert " 500 " not in text, text[-3000:]
    assert tracebacks or "Traceback" not in text, text[-3000:]


# ------------------------------------------------------------------ the lock order


@pytest.fixture(scope="module")
def pg_module() -> Iterator[str]:
    """A throwaway PostgreSQL database for this module's in-process tests (no tables)."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def pg_engine(pg_module: str) -> Iterator[Engine]:
    """An engine on that database."""
    engine = make_engine(pg_module)
    yield engine
    engine.dispose()


LOCKS = st.builds(
    locks.Lock,
    st.sampled_from([locks.COMPETITION, locks.PARTICIPANT]),
    st.integers(1, 4),
    st.booleans(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(LOCKS, max_size=6), min_size=1, max_size=3))
def test_advisory_locks_are_taken_once_each_in_one_order(
    pg_engine: Engine, batches: list[list[locks.Lock]]
) -> None:
    """Whatever locks the jobs of a transaction name, each key is taken once, in the one
    order, exclusive if any job wants it so; asking again for held ones takes nothing."""
    wanted = [lock for batch in batches for lock in batch]
    taken: list[tuple[int, int]] = []

    def spy(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "pg_advisory_xact_lock" in statement:  # one statement takes several, in order
            taken.extend(zip(params["spaces"], params["ids"], strict=True))

    event.listen(pg_engine, "before_cursor_execute", spy)
    try:
        with Session(pg_engine) as session, session.begin():
            locks.take(session, wanted)
            for batch in batches:
                locks.take(session, [lock for lock in batch if lock.shared])
            held = session.execute(
                text(
                    "SELECT classid::bigint, objid::bigint, mode FROM pg_locks "
                    "WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                )
            ).all()
    finally:
        event.remove(pg_engine, "before_cursor_execute", spy)
    keys = {(lock.space, lock.id) for lock in wanted}
    assert taken == sorted(keys)
    exclusive = {(lock.space, lock.id) for lock in wanted if not lock.shared}
    assert sorted(held) == sorted(
        (space, id_, "ExclusiveLock" if (space, id_) in exclusive else "ShareLock")
        for space, id_ in keys
    )


def test_a_shared_lock_is_never_made_exclusive(pg_engine: Engine) -> None:
    """Two holders of a shared lock that both want it exclusive would deadlock: refused."""
    with Session(pg_engine) as session, session.begin():
        locks.take(session, [locks.competition(1, shared=True)])
        with pytest.raises(RuntimeError, match="take it exclusive first"):
            locks.take(session, [locks.competition(1)])


# ------------------------------------------------------------------ the group commit


def test_a_group_commit_stops_retrying_once_the_database_is_away(tmp_path: Path) -> None:
    """A batch that fails is written job by job, unless the database is away: then the
    first failure answers every job that waits (a 503 each), at once."""
    engine = make_engine(str(tmp_path / "w.db"))
    group = GroupCommit(session_factory(engine))
    tried: list[int] = []

    def job(n: int) -> Callable[[Session, None], int]:
        def write(session: Session, _: None) -> int:
            tried.append(n)
            raise OperationalError("SELECT 1", None, ConnectionError("server closed"))

        return write

    try:
        outcomes = run(run_all(group, [job(n) for n in range(5)]))
    finally:
        group.close()
        engine.dispose()
    assert all(isinstance(o, OperationalError) for o in outcomes)
    assert tried == [0, 0]  # once in the batch, once alone: the others were not tried


# ------------------------------------------------------------------ the event bus


def test_the_event_bus_outlives_its_connections(pg_module: str) -> None:
    """A notification that is no event is skipped; with every connection terminated,
    publishing still never fails, the bus says it listens again (a resync), and events flow."""
    dsn = pg_module.replace("postgresql+psycopg://", "postgresql://")

    async def main() -> None:
        bus = PostgresEventBus(dsn)
        got: asyncio.Queue[Event] = asyncio.Queue()
        bus.subscribe(got.put_nowait)

        async def next_event(kind: str) -> Event:
            while (event := await asyncio.wait_for(got.get(), 60)).type != kind:
                pass
            return event

        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f"NOTIFY {CHANNEL}, 'not an event'")
            bus.publish(Event("competition.created", 1))
            assert (await next_event("competition.created")).competition_id == 1
            for n in range(3):
                assert terminate_backends(pg_module) >= 1
                bus.publish(Event("competition.closed", n))  # queued: sent once it reconnects
                await next_event(RESYNC)
                bus.publish(Event("competition.resolved", n))
                assert (await next_event("competition.resolved")).competition_id == n
        finally:
            bus.close()

    run(main())


# ------------------------------------------------------------------ answer rows


def test_no_answer_row_is_lost_when_hosts_add_rows_at_once(database: str, new_server: Any) -> None:
    """8 threads each add 5 distinct answer rows at once; all 40 are in the answer after."""
    server = new_server(database, *SERVER_FLAGS)
    host = Api(server)
    cid = predict_round(host)

    def add(i: int) -> requests.Response:
        rows = {"columns": ["id", "y"], "data": [[i * 5 + j, float(i)] for j in range(5)]}
        return host.post(f"/competitions/{cid}/answer", json={"rows": rows})

    answers = at_once(FLOOD, add)
    assert [r.status_code for r in answers] == [200] * FLOOD, [r.text for r in answers]
    got = host.get(f"/competitions/{cid}/answer")
    assert got.status_code == 200, got.text
    ids = sorted(row[0] for row in got.json()["data"])
    assert ids == list(range(FLOOD * 5))
    assert host.get(f"/competitions/{cid}").json()["answer_rows"] == FLOOD * 5
    no_500(server)


def test_scores_end_on_the_newest_answer_when_rows_arrive_during_submissions(
    database: str, new_server: Any
) -> None:
    """A host adds answer rows step by step while participants submit to two servers: once
    all is quiet, every submission's newest score is against the whole answer (a submission
    scored against an older answer is scored again on the newest, never the reverse)."""
    first = new_server(database, *SERVER_FLAGS)
    second = new_server(database, *SERVER_FLAGS) if "://" in database else first
    host = Api(first)
    cid = predict_round(host, rows=60)
    crowd = [Api(first) for _ in range(4)]
    done = threading.Event()

    def submit(i: int) -> None:
        if i == len(crowd):  # the host
            for step in range(6):
                rows = {"columns": ["id", "y"], "data": [[step * 10 + j, 1.0] for j in range(10)]}
                r = host.post(f"/competitions/{cid}/answer", json={"rows": rows})
                assert r.status_code == 200, r.text
            done.set()
            return
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {crowd[i].token}"
        url = f"{(first, second)[i % 2].url}/api/v1/competitions/{cid}/submissions"
        body = {"predictions": {"columns": ["id", "y"], "data": [[k, 1.0] for k in range(60)]}}
        while not done.is_set():
            r = session.post(url, json=body, timeout=60)
            assert r.status_code == 201, r.text

    at_once(len(crowd) + 1, submit)

    def settled() -> bool:
        subs = [s for me in crowd for s in me.get("/submissions").json()["submissions"]]
        return all(s["history"] and s["history"][-1]["answer_rows"] == 60 for s in subs)

    wait_for(settled, "every submission scored against all 60 answer rows", timeout=120)
    no_500(first)


# ------------------------------------------------------------------ registrations


def test_one_name_registered_at_once_is_one_201_and_409s(database: str, new_server: Any) -> None:
    """Many threads register one name at once: exactly one 201, every other a 409."""
    server = new_server(database, *SERVER_FLAGS)
    for _ in range(3):
        name = f"same-{uuid.uuid4().hex[:8]}"
        answers = at_once(
            16,
            lambda _i, n=name: requests.post(
                server.url + "/api/v1/participants", json={"name": n}, timeout=60
            ),
        )
        assert Counter(r.status_code for r in answers) == {201: 1, 409: 15}
        refusals = [r.json() for r in answers if r.status_code == 409]
        assert all(body["error"] == "conflict" and name in body["message"] for body in refusals)
    no_500(server)


# ------------------------------------------------------------------ group commits


@pytest.mark.parametrize("processes", [False, True], ids=["two servers", "--processes 2"])
def test_group_commits_of_two_servers_never_deadlock(
    pg: str, new_server: Any, processes: bool
) -> None:
    """Two servers (or two processes of one) on one database take many participants'
    submissions to the same two competitions at once, each participant through both: no
    deadlock, and every acknowledged submission is stored and counted."""
    if processes:
        servers = [new_server(pg, "--processes=2", *SERVER_FLAGS)] * 2
    else:
        servers = [new_server(pg, *SERVER_FLAGS), new_server(pg, *SERVER_FLAGS)]
    host = Api(servers[0])
    data = {"columns": ["id", "x"], "data": [[i, i] for i in range(20)]}
    answer = {"columns": ["id", "y"], "data": [[i, 2.0 * i] for i in range(20)]}
    cids = [
        host.host(type="regress", targets=["y"], dataset=data, answer=answer)["id"]
        for _ in range(2)
    ]
    crowd = [Api(servers[0]) for _ in range(8)]
    rounds = 20

    def submit(i: int) -> list[int]:
        me, server = crowd[i // 2], servers[i % 2]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {me.token}"
        made = []
        for n in range(rounds):
            cid = cids[(i + n) % 2]
            body = {
                "predictions": {"columns": ["id", "y"], "data": [[k, k + n] for k in range(20)]}
            }
            url = f"{server.url}/api/v1/competitions/{cid}/submissions"
            r = session.post(url, json=body, timeout=60)
            assert r.status_code == 201, r.text
            made.append(int(r.json()["id"]))
        return made

    made = at_once(2 * len(crowd), submit)
    for i, me in enumerate(crowd):
        stored = me.get("/submissions").json()["submissions"]
        assert sorted(s["id"] for s in stored) == sorted(made[2 * i] + made[2 * i + 1])
    for cid in cids:
        board = host.board(cid)
        assert sum(e["submissions"] for e in board["entries"]) == len(crowd) * rounds
    with admin() as conn:
        deadlocks = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (dbname(pg),)
        ).fetchone()
    for server in servers:
        no_500(server)
    assert deadlocks == (0,)


# ------------------------------------------------------------------ lost connections


def watch(server: ServerProcess) -> websocket.WebSocket:
    """A client on a server's event stream, past its greeting."""
    ws = websocket.create_connection(events_url(server), timeout=30)
    assert json.loads(ws.recv())["type"] == "hello"
    return ws


def scored_on(ws: websocket.WebSocket, submission_id: int, timeout: float = 60.0) -> None:
    """Read events until the one for `submission_id` arrives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        event = json.loads(ws.recv())
        if event["type"] == "submission.scored" and event["data"]["submission_id"] == submission_id:
            return
    raise AssertionError(f"no event for submission {submission_id}")


def test_servers_outlive_their_terminated_database_connections(pg: str, new_server: Any) -> None:
    """Every backend is terminated under two servers: writes on A go on (a 503 at worst,
    never a 500) and A's events reach a watcher on B once B listens again."""
    a, b = new_server(pg, *SERVER_FLAGS), new_server(pg, *SERVER_FLAGS)
    host, player = Api(a), Api(a)
    data = {"columns": ["id", "x"], "data": [[i, i] for i in range(10)]}
    answer = {"columns": ["id", "y"], "data": [[i, 1.0 * i] for i in range(10)]}
    cid = host.host(type="regress", targets=["y"], dataset=data, answer=answer)["id"]
    body = {"predictions": {"columns": ["id", "y"], "data": [[i, i + 0.5] for i in range(10)]}}
    ws = watch(b)
    first = player.post(f"/competitions/{cid}/submissions", json=body)
    assert first.status_code == 201, first.text
    scored_on(ws, first.json()["id"])

    for _ in range(3):
        assert terminate_backends(pg) >= 2  # at least both servers' listeners
        key = uuid.uuid4().hex
        r = player.post(
            f"/competitions/{cid}/submissions", json=body, headers={"Idempotency-Key": key}
        )
        while r.status_code == 503:  # the outage is seen; the client retries with its key
            assert r.json()["error"] == "database_unavailable"
            assert r.headers["Retry-After"].isdigit()
            time.sleep(0.2)
            r = player.post(
                f"/competitions/{cid}/submissions", json=body, headers={"Idempotency-Key": key}
            )
        assert r.status_code in (200, 201), r.text
        read_event(ws, "hello", timeout=60)  # B listens again, and says events were missed
        wait_for(lambda: listeners(pg) == 2, "both servers to listen again")
        after = player.post(f"/competitions/{cid}/submissions", json=body)
        assert after.status_code == 201, after.text
        scored_on(ws, after.json()["id"])
    ws.close()
    no_500(a, tracebacks=True)
    no_500(b, tracebacks=True)


def test_writes_get_503_while_the_database_refuses_connections(pg: str, new_server: Any) -> None:
    """While the database takes no connections, writes (and an event stream that must check
    its token) are a 503 with Retry-After, never a 500; once it is back, the same server
    takes them again."""
    server = new_server(pg, *SERVER_FLAGS)
    host, player = Api(server), Api(server)
    data = {"columns": ["id", "x"], "data": [[i, i] for i in range(10)]}
    answer = {"columns": ["id", "y"], "data": [[i, 1.0 * i] for i in range(10)]}
    cid = host.host(type="regress", targets=["y"], dataset=data, answer=answer)["id"]
    name = dbname(pg)
    watcher = server.register()
    body = {"predictions": {"columns": ["id", "y"], "data": [[i, i] for i in range(10)]}}
    with admin() as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        try:
            terminate_backends(pg)
            outage = [
                player.post(f"/competitions/{cid}/submissions", json=body),
                requests.post(server.url + "/api/v1/participants", json={"name": "x"}, timeout=60),
                host.post(f"/competitions/{cid}/answer", json={"rows": split_rows()}),
            ]
            stream = f"{server.url}/api/v1/events?token={watcher['token']}"  # not cached yet
            handshake = {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version": "13",
            }
            outage.append(requests.get(stream, headers=handshake, timeout=60))
        finally:
            conn.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    for r in outage:
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "database_unavailable"
        assert "try again" in r.json()["message"]
        assert int(r.headers["Retry-After"]) >= 1
    again = player.post(f"/competitions/{cid}/submissions", json=body)
    assert again.status_code == 201, again.text
    assert " 500 " not in server.log.read_text()


def split_rows() -> dict[str, Any]:
    """A few answer rows in split form."""
    import pandas as pd

    return split(pd.DataFrame({"id": [1, 2], "y": [1.0, 2.0]}))
