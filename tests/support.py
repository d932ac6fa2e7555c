"""Start real crowdsource servers and databases for tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

PG_ADMIN_URL = os.environ.get("CROWDSOURCE_TEST_PG", "postgresql://127.0.0.1:5432/test")
SECRETS = Path(tempfile.gettempdir()) / "crowdsource-test-secrets"


def shared_secret(db: str) -> Path:
    """The secret file every test server on one PostgreSQL database uses, as the servers of
    one deployment share theirs (a server with another secret refuses to start)."""
    return SECRETS / f"{db.rsplit('/', 1)[-1]}.secret"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections for as long as the block runs: bound by
    this socket (so no other process can take it) but never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


class ServerProcess:
    """A real `python -m crowdsource.server` process. The first start lets the server pick a
    free port itself (--port=0 --port-file), so no other process can take it in between; a
    restart asks for the same port again."""

    def __init__(self, db: str, workdir: Path, *extra: str) -> None:
        self.db = db
        self.workdir = workdir
        self.extra = list(extra)
        if "://" in db and not any(arg.startswith("--secret-file") for arg in extra):
            self.extra.append(f"--secret-file={shared_secret(db)}")
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.name = f"server-{uuid.uuid4().hex[:12]}"
        self.log = workdir / f"{self.name}.log"
        self.port_file = workdir / f"{self.name}.port"

    @property
    def url(self) -> str:
        """The server's base URL (known once it has started)."""
        assert self.port, "the server has not started yet"
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        """Start the process and wait until it listens and the API answers."""
        self.port_file.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "crowdsource.server",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--port-file={self.port_file}",
            f"--db={self.db}",
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            if self.port_file.exists():
                self.port = int(self.port_file.read_text())
                try:
                    requests.get(self.url + "/api/v1/competitions", timeout=5)
                    return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the process, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Stop the process politely."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> ServerProcess:
        """Kill and start again on the same port and database."""
        self.kill()
        return self.start()

    def register(self, name: str = "") -> dict:
        """Register a participant; returns its JSON with the token."""
        name = name or f"p-{uuid.uuid4().hex[:12]}"
        r = requests.post(self.url + "/api/v1/participants", json={"name": name}, timeout=10)
        r.raise_for_status()
        return dict(r.json())


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create a throwaway PostgreSQL database; yield its SQLAlchemy URL; drop it after."""
    import psycopg

    name = f"cs_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"postgresql+psycopg://{base.split('://', 1)[1]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shared_secret(name).unlink(missing_ok=True)


@contextmanager
def private_server(kind: str, workdir: Path, *args: str) -> Iterator[ServerProcess]:
    """A started server of its own, on a SQLite file in `workdir` or on a throwaway PostgreSQL
    database; stopped after."""
    if kind == "sqlite":
        server = ServerProcess(str(workdir / "crowdsource.db"), workdir, *args).start()
        yield server
        server.stop()
        return
    with postgres_database() as url:
        server = ServerProcess(url, workdir, *args).start()
        yield server
        server.stop()


def run(coro: Any) -> Any:
    """Run a coroutine to its end on a loop of its own (a test may already be in a loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def database_at(database: str, revision: str) -> Any:
    """An engine on `database` migrated only to `revision`, holding one host and one regress
    competition as that schema stored them (for tests that upgrade it to the newest)."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from crowdsource.server.storage.engine import MIGRATIONS, make_engine
    from crowdsource.times import utcnow

    engine = make_engine(database)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    now = utcnow().replace(tzinfo=None)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO participants VALUES (1, 'h', 'x', :t)"), {"t": now})
        conn.execute(text("INSERT INTO blobs (id, data) VALUES (1, :d)"), {"d": b"-"})
        conn.execute(
            text(
                "INSERT INTO competitions (id, host_id, title, description, type, metric,"
                " id_column, targets, opens_at, public_fraction, split_salt, rows, answer_rows,"
                " answer_version, dataset_blob_id, closed_announced, created_at) VALUES (1, 1,"
                " 't', '', 'regress', 'rmse', 'id', '[\"y\"]', :t, 1.0, 's', 1, 0, 0, 1, false,"
                " :t)"
            ),
            {"t": now},
        )
    return engine


def seed_board(
    *,
    db: str,
    competition_id: int,
    predictions: bytes,
    participants: int = 10_000,
    scores: Sequence[float] | None = None,
    prefix: str = "seeded",
) -> list[int]:
    """Put `participants` new participants on a competition's public board, each with one
    scored submission (`predictions`, Parquet bytes, stored once), written straight into the
    database `db` (SQLite file or URL) through the server's own tables, in a second or two.

    Scores default to 1.0 up to 2.0, two participants a score (so ties occur); names are
    `{prefix}-00000` on. Seed while no server has read that board (between `stop()` and
    `start()`): a running server keeps boards it has built. Returns the new participants' ids
    in the order of `scores`."""
    from sqlalchemy import insert, select

    from crowdsource.server.storage.engine import make_engine
    from crowdsource.server.storage.tables import (
        BLOBS,
        COMPETITIONS,
        ENTRIES,
        SCORES,
        SUBMISSIONS,
        Participant,
    )
    from crowdsource.times import utcnow

    people = Participant.__table__
    if scores is None:
        scores = [1.0 + (i // 2) * 2 / participants for i in range(participants)]
    start = utcnow() - timedelta(seconds=len(scores))
    at = [start + timedelta(seconds=i) for i in range(len(scores))]  # ties: the earlier first
    engine = make_engine(db)
    try:
        with engine.begin() as conn:
            rows = conn.scalar(
                select(COMPETITIONS.c.answer_rows).where(COMPETITIONS.c.id == competition_id)
            )
            if rows is None:
                raise ValueError(f"no competition {competition_id} in {db}: host it first")
            blob = conn.execute(insert(BLOBS).returning(BLOBS.c.id), {"data": predictions})
            blob_id = blob.scalar_one()
            ids = _inserted(
                conn,
                people,
                [
                    {
                        "name": f"{prefix}-{i:05d}",
                        "token_hash": uuid.uuid4().hex * 2,
                        "created_at": t,
                    }
                    for i, t in enumerate(at)
                ],
            )
            subs = _inserted(
                conn,
                SUBMISSIONS,
                [
                    {
                        "competition_id": competition_id,
                        "participant_id": pid,
                        "state": "scored",
                        "public_score": score,
                        "predictions_blob_id": blob_id,
                        "created_at": t,
                        "scored_at": t,
                    }
                    for pid, score, t in zip(ids, scores, at, strict=True)
                ],
            )
            conn.execute(
                insert(SCORES),
                [
                    {"submission_id": sid, "public_score": score, "answer_rows": rows, "at": t}
                    for sid, score, t in zip(subs, scores, at, strict=True)
                ],
            )
            conn.execute(
                insert(ENTRIES),
                [
                    {
                        "competition_id": competition_id,
                        "board": "public",
                        "participant_id": pid,
                        "score": score,
                        "best_submission_id": sid,
                        "submissions": 1,
                        "last_submission_at": t,
                    }
                    for pid, sid, score, t in zip(ids, subs, scores, at, strict=True)
                ],
            )
    finally:
        engine.dispose()
    return ids


def _inserted(conn: Any, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many rows in one go; their new ids, in the order of `rows`."""
    from sqlalchemy import insert

    statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
    return [int(i) for i in conn.execute(statement, rows).scalars()]
