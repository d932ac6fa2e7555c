"""The server as a whole: its API description, migrations, processes, scoring backends."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import websocket
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from crowdsource.server.app import routes
from crowdsource.server.storage.engine import database_url
from crowdsource.server.storage.tables import Base
from tests.api import Api, classify_data, events_url, read_event, split
from tests.live import Follower
from tests.support import ServerProcess


def test_openapi_lists_every_route(sqlite_server: ServerProcess) -> None:
    """Every API route the server serves is in its OpenAPI document."""
    doc = requests.get(sqlite_server.url + "/api/v1/openapi.json", timeout=10).json()
    described = {re.sub(r"\{\w+\}", "{}", path) for path in doc["paths"]}
    served = {
        re.sub(r"\(.*?\)", "{}", pattern)
        for pattern, *_ in routes()
        if pattern.startswith("/api/") or pattern in ("/healthz", "/readyz", "/metrics")
    }
    assert served - described == set()
    assert described - served == set()


def test_migrations_match_the_models(tmp_path: Path, new_server) -> None:
    """The schema the migrations build is the schema the code expects, and reopens."""
    db = tmp_path / "old.db"
    first = new_server(str(db))
    Api(first)
    first.stop()
    new_server(str(db)).stop()
    engine = create_engine(database_url(str(db)))
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(text("SELECT count(*) FROM participants")).scalar() == 1


def test_help_explains_the_options() -> None:
    """`python -m crowdsource.server --help` names the options people need."""
    out = subprocess.run(
        [sys.executable, "-m", "crowdsource.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for option in ("--port", "--db", "--ip", "--scoring", "--max-body-mb", "--write-rate"):
        assert option in out


def test_secret_is_generated_beside_the_database(tmp_path: Path, new_server) -> None:
    """No secret ships: the first start writes one, readable by the owner only."""
    new_server(str(tmp_path / "cs.db"))
    secret = tmp_path / "cs.db.secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text()) == 64


def test_events_cross_processes_on_postgresql(pg_url: str, tmp_path: Path, new_server) -> None:
    """Two server processes on one PostgreSQL: a score on one is pushed by the other."""
    one, two = new_server(pg_url), new_server(pg_url)  # sharing the database's secret
    dataset, answer = classify_data(60)
    host, bob = Api(one), Api(one)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    ws = websocket.create_connection(events_url(two, competition=comp["id"]))
    read_event(ws, "hello")
    bob.url = two.url
    assert bob.submit(comp["id"], answer).status_code == 201
    board = Follower(ws).until(lambda f: len(f.entries) == 1)
    assert board.entries[0]["score"] == 1.0
    ws.close()


def test_dask_scores_large_submissions(tmp_path: Path, new_server) -> None:
    """With --scoring=dask, submissions are scored on a Dask cluster."""
    server = new_server(str(tmp_path / "dask.db"), "--scoring=dask", "--inline-kb=0")
    dataset, answer = classify_data(500)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    assert bob.submit(comp["id"], answer).json()["public_score"] == 1.0


def test_server_answers_while_a_million_rows_score(sqlite_server: ServerProcess) -> None:
    """A 1,000,000-row submission is scored off the event loop: reads go on meanwhile."""
    n = 1_000_000
    rng = np.random.default_rng(0)
    ids, y = rng.permutation(n), rng.normal(size=n)
    host, bob = Api(sqlite_server), Api(sqlite_server)
    comp = host.host(
        type="regress",
        metric="rmse",
        targets=["y"],
        dataset={"format": "parquet", "data": _b64(pd.DataFrame({"id": ids}))},
        answer={"format": "parquet", "data": _b64(pd.DataFrame({"id": ids, "y": y}))},
    )
    body = io.BytesIO()
    pd.DataFrame({"id": ids[::-1], "y": 0.0}).to_parquet(body)
    done: list[float] = []
    big = threading.Thread(
        target=lambda: done.append(
            bob.post(
                f"/competitions/{comp['id']}/submissions",
                data=body.getvalue(),
                headers={"Content-Type": "application/vnd.apache.parquet"},
            ).json()["public_score"]
        )
    )
    big.start()
    reads = 0
    while big.is_alive():
        assert bob.get(f"/competitions/{comp['id']}/leaderboard").status_code == 200
        reads += 1
    big.join()
    assert done[0] == pytest.approx(np.sqrt(np.mean(y**2)), rel=1e-9)
    assert reads > 5


def _b64(df: pd.DataFrame) -> str:
    """A frame as base64 Parquet."""
    import base64

    buf = io.BytesIO()
    df.to_parquet(buf)
    return base64.b64encode(buf.getvalue()).decode()


def test_scoring_processes_end_with_a_killed_server(tmp_path: Path, new_server) -> None:
    """SIGKILL leaves no orphaned scoring process behind (they would pile up on restarts)."""
    import psutil

    server = new_server(str(tmp_path / "orphans.db"), "--scoring-processes=2")
    assert server.proc is not None
    main = psutil.Process(server.proc.pid)
    deadline = time.monotonic() + 60
    while len(main.children(recursive=True)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the pool's workers start in the background
    workers = main.children(recursive=True)
    assert len(workers) >= 2
    server.kill()
    _, alive = psutil.wait_procs(workers, timeout=60)
    assert alive == []


def test_large_submissions_go_through_a_file_and_the_worker_stores_them(
    database: str, tmp_path: Path, new_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body over --inline-kb is spooled to a file while it arrives (the server process never
    holds it), scored and stored by the scoring worker, and the file is gone afterwards. A
    refused one leaves nothing stored."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    server = new_server(database, "--inline-kb=1")
    dataset, answer = classify_data(3000)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        daily_limit=1,
    )
    buf = io.BytesIO()
    answer.sample(frac=1, random_state=1).to_parquet(buf, index=False)
    body = buf.getvalue()
    seen: list[list[str]] = []

    def slowly() -> Any:
        yield body[: len(body) // 2]
        time.sleep(0.5)  # the first half is on the server by now
        seen.append(sorted(p.name for p in spool.iterdir()))
        yield body[len(body) // 2 :]

    url = f"/competitions/{comp['id']}/submissions"
    parquet = {"Content-Type": "application/vnd.apache.parquet", "Idempotency-Key": "once"}
    made = bob.post(url, data=slowly(), headers=parquet)
    assert made.status_code == 201, made.text
    assert made.json()["public_score"] == 1.0
    assert [name.startswith("crowdsource-body-") for name in seen[0]] == [True]
    stored = bob.get(
        f"/submissions/{made.json()['id']}/predictions",
        headers={"Accept": "application/vnd.apache.parquet"},
    )
    assert stored.content == body  # stored as sent, by the worker

    engine = create_engine(database_url(database))
    with engine.connect() as conn:
        blobs = conn.execute(text("SELECT count(*) FROM blobs")).scalar_one()
    again = bob.post(url, data=body, headers=parquet)  # the same key: the same submission
    assert (again.status_code, again.json()["id"]) == (200, made.json()["id"])
    over = bob.post(url, data=body, headers={"Content-Type": parquet["Content-Type"]})
    assert over.status_code == 429, over.text  # the daily limit of 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == blobs
    engine.dispose()
    assert list(spool.iterdir()) == []


def test_a_restart_deletes_predictions_a_crash_left_unrecorded(tmp_path: Path, new_server) -> None:
    """Predictions a worker stored for a submission the crash kept from being recorded are
    deleted on the next start; a competition's superseded answer is kept."""
    db = str(tmp_path / "orphans.db")
    server = new_server(db)
    ids = np.arange(20)
    truth = pd.DataFrame({"id": ids, "y": np.linspace(0, 1, 20)})
    host = Api(server)
    comp = host.host(type="predict", metric="mae", targets=["y"], dataset=pd.DataFrame({"id": ids}))
    for rows in (truth[:10], truth[10:]):
        more = host.post(f"/competitions/{comp['id']}/answer", json={"rows": split(rows)})
        assert more.status_code == 200, more.text
    server.kill()
    engine = create_engine(database_url(db))
    with engine.begin() as conn:
        before = conn.execute(text("SELECT id FROM blobs ORDER BY id")).scalars().all()
        conn.execute(text("INSERT INTO blobs (data) VALUES (x'00')"))
    server.start()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM blobs ORDER BY id")).scalars().all() == before
    engine.dispose()
    assert len(before) == 3  # the dataset, the first answer and the merged one


def test_several_processes_keep_boards_and_events_live_across_them(
    tmp_path: Path, new_server
) -> None:
    """With --processes=2 on SQLite both processes answer; a submission shows at once on the
    leaderboard whichever process is asked, and on every event stream; a crashed process is
    replaced, and all of them end with the server."""
    import psutil

    server = new_server(str(tmp_path / "multi.db"), "--processes=2", "--log-level=DEBUG")
    assert server.proc is not None
    parent = psutil.Process(server.proc.pid)
    assert len(parent.children()) == 2
    dataset, answer = classify_data(100)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    board = f"{server.url}/api/v1/competitions/{comp['id']}/leaderboard"

    def entries() -> list[dict[str, Any]]:
        """The board, read on a new connection (the kernel picks the process)."""
        found: list[dict[str, Any]] = requests.get(board, headers={"Connection": "close"}).json()[
            "entries"
        ]
        return found

    assert all(entries() == [] for _ in range(20))  # each process has cached the empty board
    streams = [websocket.create_connection(events_url(server)) for _ in range(6)]
    for ws in streams:
        read_event(ws, "hello")
    assert bob.submit(comp["id"], answer).status_code == 201
    for ws in streams:
        changed = read_event(ws, "leaderboard.changed")
        assert changed["data"]["total"] == 1
        ws.close()
    assert all(len(entries()) == 1 for _ in range(20))
    reads = re.findall(
        r" (\d+) DEBUG tornado.access: 200 GET /api/v1/competitions/\d+/leader",
        server.log.read_text(),
    )
    assert len(set(reads)) == 2  # both processes answered reads

    crashed = parent.children()[0]
    crashed.kill()
    crashed.wait(60)
    deadline = time.monotonic() + 90
    while len(parent.children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(parent.children()) == 2 and crashed not in parent.children()
    assert len(entries()) == 1
    everything = parent.children(recursive=True)
    server.kill()
    _, alive = psutil.wait_procs(everything, timeout=60)
    assert alive == []
