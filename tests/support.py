"""Start real crowdsource servers and databases for tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

PG_ADMIN_URL = os.environ.get("CROWDSOURCE_TEST_PG", "postgresql://127.0.0.1:5432/test")


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A real `python -m crowdsource.server` process on a free port."""

    def __init__(self, db: str, workdir: Path, *extra: str) -> None:
        self.db = db
        self.workdir = workdir
        self.extra = list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"server-{self.port}.log"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the process and wait until the API answers."""
        cmd = [
            sys.executable,
            "-m",
            "crowdsource.server",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--db={self.db}",
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                requests.get(self.url + "/api/v1/competitions", timeout=1)
                return self
            except requests.ConnectionError:
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
        name = name or f"p-{uuid.uuid4().hex[:8]}"
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


def run(coro: Any) -> Any:
    """Run a coroutine to its end on a loop of its own (a test may already be in a loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
