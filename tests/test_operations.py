"""What an operator runs and watches, against real servers: migrations once, the shared
secret, /healthz, /readyz, /metrics, the drain on SIGTERM, configuration from the
environment, and write limits shared by several servers."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from crowdsource.errors import RateLimited
from crowdsource.server.ratelimit import RateLimiter, SharedRateLimiter
from crowdsource.server.storage.engine import migrate
from crowdsource.server.storage.store import Store
from tests.api import Api, classify_data, events_url, probabilities, read_event
from tests.support import ServerProcess, bearer, postgres_database

CLASSES = ("a", "b", "c")
EXAMPLES = itertools.count(1)


@pytest.fixture
def store(database: str) -> Any:
    """A migrated store on a fresh SQLite file or PostgreSQL database, in this process."""
    opened = Store(db=database)
    migrate(opened.engine)
    yield opened
    opened.close()


def metrics(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the server's /metrics, parsed by prometheus_client, by name and labels."""
    r = requests.get(server.url + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Any:
    """Run the `crowdsource` command line in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "crowdsource.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
    )


def refused_start(db: str, workdir: Path, *args: str) -> str:
    """Start a server that must refuse to start; its log."""
    server = ServerProcess(db, workdir, *args)
    with pytest.raises(RuntimeError, match="server exited"):
        server.start()
    assert server.proc is not None and server.proc.wait(30) == 1
    log = server.log.read_text()
    assert "Traceback" not in log
    return log


def competition(server: ServerProcess) -> tuple[Api, int, list[int]]:
    """A host with an open classify competition; its id and the dataset's ids."""
    host = Api(server)
    dataset, answer = classify_data(60, CLASSES)
    spec = {"type": "classify", "metric": "logloss", "targets": ["label"]}
    cid = host.host(**spec, dataset=dataset, answer=answer)["id"]
    return host, cid, [int(i) for i in dataset["id"]]


# ---------------------------------------------------------------- migrations and the secret


@pytest.mark.parametrize("round_", range(3))
def test_servers_started_together_on_a_fresh_postgres_database_all_come_up(
    tmp_path: Path, round_: int
) -> None:
    """Four servers started at once on an empty database: one migrates, the others wait for
    it, and all four serve."""
    with postgres_database() as url:
        servers = [ServerProcess(url, tmp_path) for _ in range(4)]
        try:
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda s: s.start(timeout=120), servers))
            for server in servers:
                assert requests.get(server.url + "/readyz", timeout=30).json()["status"] == "ready"
            assert run_cli("db", "current", "--db", url).returncode == 0
        finally:
            for server in servers:
                server.stop()


def test_no_migrate_refuses_an_old_schema_until_db_upgrade_is_run(tmp_path: Path) -> None:
    """--no-migrate: a server refuses an empty database in one line naming the command that
    fixes it; `crowdsource db upgrade` migrates; then the server starts."""
    with postgres_database() as url:
        log = refused_start(url, tmp_path, "--no-migrate")
        assert "crowdsource db upgrade" in log
        assert run_cli("db", "current", "--db", url).returncode == 1
        upgraded = run_cli("db", "upgrade", "--db", url)
        assert upgraded.returncode == 0, upgraded.stderr
        assert "schema at revision" in upgraded.stdout
        assert run_cli("db", "current", "--db", url).returncode == 0
        server = ServerProcess(url, tmp_path, "--no-migrate").start()
        try:
            assert requests.get(server.url + "/readyz", timeout=30).status_code == 200
        finally:
            server.stop()


def test_db_command_says_when_the_database_cannot_be_reached() -> None:
    """No traceback: one line naming the database."""
    done = run_cli("db", "upgrade", "--db", "postgresql+psycopg://127.0.0.1:1/nowhere")
    assert done.returncode == 1
    assert "cannot reach the database" in done.stderr and "Traceback" not in done.stderr


def test_a_server_with_another_secret_refuses_to_start_and_names_the_file(tmp_path: Path) -> None:
    """Two servers on one database must share the secret: the second, with its own, refuses
    and says which file to share; with a copy of the first's file it starts, and tokens one
    issues work on the other."""
    first_dir, second_dir = tmp_path / "a", tmp_path / "b"
    first_dir.mkdir()
    second_dir.mkdir()
    with postgres_database() as url:
        own = "--secret-file=crowdsource.secret"  # each in its own folder
        first = ServerProcess(url, first_dir, own).start()
        try:
            (second_dir / "crowdsource.secret").write_text("another secret")
            log = refused_start(url, second_dir, own)
            assert str(second_dir / "crowdsource.secret") in log
            assert "copy the secret file" in log
            shutil.copy(first_dir / "crowdsource.secret", second_dir / "crowdsource.secret")
            second = ServerProcess(url, second_dir, own).start()
            try:
                token = first.register()["token"]
                me = requests.get(second.url + "/api/v1/participants/me", headers=bearer(token))
                assert me.status_code == 200
            finally:
                second.stop()
        finally:
            first.stop()


# ---------------------------------------------------------------- health, readiness, metrics


def test_healthz_and_readyz_answer(server: ServerProcess) -> None:
    """Alive and ready, as JSON."""
    health = requests.get(server.url + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = requests.get(server.url + "/readyz", timeout=30)
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "problems": {}}


def test_readyz_is_503_and_says_why_when_the_schema_is_behind(tmp_path: Path) -> None:
    """A database moved to another revision (a newer release migrated it, say): not ready,
    with what to do."""
    with postgres_database() as url:
        server = ServerProcess(url, tmp_path).start()
        try:
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                current = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                conn.execute("UPDATE alembic_version SET version_num = 'elsewhere'")
            r = requests.get(server.url + "/readyz", timeout=30)
            assert r.status_code == 503
            assert r.json()["status"] == "not ready"
            assert "crowdsource db upgrade" in r.json()["problems"]["database"]
            assert requests.get(server.url + "/healthz", timeout=30).status_code == 200
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("UPDATE alembic_version SET version_num = %s", current)
            assert requests.get(server.url + "/readyz", timeout=30).status_code == 200
        finally:
            server.stop()


def test_metrics_count_requests_submissions_scoring_and_the_pool(server: ServerProcess) -> None:
    """Prometheus text that prometheus_client parses: requests by route pattern and status,
    submissions scored and failed, scoring time, the database pool."""
    _, cid, ids = competition(server)
    player = Api(server)
    before = metrics(server)
    assert player.submit(cid, probabilities(ids, CLASSES, 1)).status_code == 201
    bad = probabilities(ids, CLASSES, 2).assign(a=-5.0)
    player.submit(cid, bad, params={"wait": "false"})
    failed = ("crowdsource_submissions_total", (("outcome", "failed"),))
    deadline = time.monotonic() + 60
    after = metrics(server)
    while after.get(failed, 0) == before.get(failed, 0) and time.monotonic() < deadline:
        time.sleep(0.2)  # scored in the background
        after = metrics(server)
    assert after[failed] == before.get(failed, 0) + 1
    route = "/api/v1/competitions/{}/submissions"
    key = (
        "crowdsource_http_requests_total",
        (("method", "POST"), ("route", route), ("status", "201")),
    )
    assert after[key] >= before.get(key, 0) + 1
    scored = ("crowdsource_submissions_total", (("outcome", "scored"),))
    assert after[scored] >= before.get(scored, 0) + 1
    assert after[("crowdsource_scoring_seconds_count", ())] >= 2
    assert after[("crowdsource_db_pool_size", ())] == 8
    assert ("crowdsource_scoring_jobs_pending", ()) in after
    assert ("crowdsource_websocket_listeners", ()) in after


def test_metrics_of_every_process_in_one_scrape(tmp_path: Path) -> None:
    """--processes 2: whichever process answers a scrape, it counts every process's requests
    and listeners (prometheus_client's multiprocess mode)."""
    server = ServerProcess(str(tmp_path / "cs.db"), tmp_path, "--processes=2").start()
    try:
        sockets = []
        for _ in range(6):  # the kernel spreads them over both processes
            sockets.append(websocket.create_connection(events_url(server), timeout=30))
        answered_by = {ws.getheaders()["x-crowdsource-process"] for ws in sockets}
        for _ in range(20):
            requests.get(server.url + "/healthz", headers={"Connection": "close"}, timeout=30)
        key = (
            "crowdsource_http_requests_total",
            (("method", "GET"), ("route", "/healthz"), ("status", "200")),
        )
        for _ in range(4):
            seen = metrics(server)
            assert seen[key] == 20
            assert seen[("crowdsource_websocket_listeners", ())] == 6
        assert answered_by == {"1", "2"}
        for ws in sockets:
            ws.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- stopping


def submit_until_refused(
    player: Api, cid: int, ids: list[int], seed: int, outcomes: list[tuple[int, int | None]]
) -> None:
    """Submit again and again until the server no longer takes connections; keep each
    answer's status and the submission id it acknowledged."""
    session = requests.Session()
    session.headers.update(player.session.headers)
    body = json.dumps(
        {
            "predictions": json.loads(
                probabilities(ids, CLASSES, seed).to_json(orient="split", index=False)
            )
        }
    )
    for n in range(2000):
        try:
            r = session.post(
                f"{player.url}/api/v1/competitions/{cid}/submissions",
                data=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": f"{seed}-{n}"},
                timeout=60,
            )
        except requests.ConnectionError:
            return
        outcomes.append((r.status_code, r.json().get("id") if r.status_code < 300 else None))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_sigterm_under_load_drains(tmp_path: Path, kind: str) -> None:
    """SIGTERM while clients submit: every answer is a normal one (no 500), every
    acknowledged submission is in the database, a listener's WebSocket is closed with 1001,
    and the server exits 0."""
    with postgres_database() as pg:
        db = pg if kind == "postgresql" else str(tmp_path / "cs.db")
        server = ServerProcess(db, tmp_path, "--write-rate=0").start()
        _, cid, ids = competition(server)
        players = [Api(server) for _ in range(3)]
        ws = websocket.create_connection(events_url(server), timeout=30)
        read_event(ws, "hello")
        outcomes: list[tuple[int, int | None]] = []
        threads = [
            threading.Thread(target=submit_until_refused, args=(p, cid, ids, i, outcomes))
            for i, p in enumerate(players)
        ]
        for thread in threads:
            thread.start()
        while len(outcomes) < 30:
            time.sleep(0.05)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        ws.settimeout(60)
        frame = ws.recv_data_frame(control_frame=True)[1]
        while frame.opcode != websocket.ABNF.OPCODE_CLOSE:
            frame = ws.recv_data_frame(control_frame=True)[1]
        assert int.from_bytes(frame.data[:2], "big") == 1001
        assert b"stopping" in frame.data[2:]
        for thread in threads:
            thread.join(120)
        assert server.proc.wait(60) == 0
        statuses = {status for status, _ in outcomes}
        assert statuses <= {201}, statuses
        acknowledged = {sid for _, sid in outcomes if sid is not None}
        again = ServerProcess(db, tmp_path).start()
        try:
            mine = []
            for player in players:
                player.url = again.url
                mine += [s["id"] for s in player.get("/submissions").json()["submissions"]]
            assert acknowledged <= set(mine)
        finally:
            again.stop()


# ---------------------------------------------------------------- configuration


def test_options_come_from_the_environment_under_the_command_line(tmp_path: Path) -> None:
    """CROWDSOURCE_<OPTION> sets an option; the command line beats it; it beats a config
    file; --help says so."""
    (tmp_path / "config.json").write_text(
        json.dumps({"CrowdsourceServer": {"db_pool_size": 2, "write_burst": 7}})
    )
    env = {
        **os.environ,
        "CROWDSOURCE_DB": str(tmp_path / "env.db"),
        "CROWDSOURCE_DB_POOL_SIZE": "3",
        "CROWDSOURCE_CONFIG_FILE": str(tmp_path / "config.json"),
    }
    port_file = tmp_path / "port"
    cmd = [sys.executable, "-m", "crowdsource.server", "--port=0", f"--port-file={port_file}"]
    for extra, pool in (([], 3), (["--db-pool-size=5"], 5)):
        port_file.unlink(missing_ok=True)
        proc = subprocess.Popen([*cmd, *extra], env=env, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() and time.monotonic() < deadline:
                assert proc.poll() is None
                time.sleep(0.1)
            server = ServerProcess("", tmp_path)
            server.port = int(port_file.read_text())
            assert metrics(server)[("crowdsource_db_pool_size", ())] == pool
            assert (tmp_path / "env.db").exists()
        finally:
            proc.terminate()
            assert proc.wait(30) == 0
    shown = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert "CROWDSOURCE_DB" in shown.stdout and "CROWDSOURCE_PORT" in shown.stdout


def test_a_bad_environment_value_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    """No traceback; the variable and the value are named."""
    env = {**os.environ, "CROWDSOURCE_PORT": "eighty"}
    done = subprocess.run(
        [sys.executable, "-m", "crowdsource.server", f"--db={tmp_path / 'x.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "CROWDSOURCE_PORT" in done.stderr and "eighty" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- limits across servers


def flood(urls: list[str], token: str, count: int) -> list[int]:
    """`count` writes, spread over the servers in turn; their statuses."""
    return [
        requests.post(
            f"{urls[n % len(urls)]}/api/v1/competitions/999999/close", headers=bearer(token)
        ).status_code
        for n in range(count)
    ]


def test_two_postgres_servers_give_the_write_burst_once(tmp_path: Path) -> None:
    """Writes alternate between two servers on one database: the burst is shared."""
    with postgres_database() as url:
        args = ("--write-rate=0.01", "--write-burst=4")
        first = ServerProcess(url, tmp_path, *args).start()
        second = ServerProcess(url, tmp_path, *args).start()
        try:
            token = first.register()["token"]
            statuses = flood([first.url, second.url], token, 10)
            assert statuses == [404] * 4 + [429] * 6
        finally:
            first.stop()
            second.stop()


def test_sqlite_processes_share_the_write_burst(tmp_path: Path) -> None:
    """--processes 2 on SQLite: the same, whichever process takes each connection."""
    server = ServerProcess(
        str(tmp_path / "cs.db"), tmp_path, "--processes=2", "--write-rate=0.01", "--write-burst=4"
    ).start()
    try:
        token = server.register()["token"]
        assert flood([server.url], token, 10) == [404] * 4 + [429] * 6
    finally:
        server.stop()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([0.0, 0.01, 0.1, 0.5, 1.0, 3.0]), st.sampled_from([1, 2])),
        min_size=1,
        max_size=40,
    ),
    rate=st.sampled_from([0.5, 2.0, 10.0]),
    burst=st.integers(min_value=1, max_value=5),
)
def test_the_shared_bucket_decides_as_the_in_memory_one(
    store: Store, steps: list[tuple[float, int]], rate: float, burst: int
) -> None:
    """Any sequence of writes, at any pace, by any participants: the shared bucket (in the
    PostgreSQL database, or in the file beside a SQLite one) grants and refuses exactly as the
    one-process bucket does."""
    now = [1_800_000_000.0]  # both buckets read this clock
    fresh = next(EXAMPLES) * 10  # the database keeps buckets from one example to the next
    alone = RateLimiter(rate=rate, burst=burst, clock=lambda: now[0])
    shared = SharedRateLimiter(rate=rate, burst=burst, store=store, clock=lambda: now[0])
    for dt, key in steps:
        now[0] += dt
        try:
            alone.check(key)
            expected = True
        except RateLimited:
            expected = False
        assert shared._take(fresh + key)[1] == expected
