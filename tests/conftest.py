"""Fixtures: real servers on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ServerProcess, postgres_database


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database for one test: a SQLite file or a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "crowdsource.db")
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One real server per database kind, shared by the session."""
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    db = str(workdir / "crowdsource.db")
    if request.param == "postgresql":
        db = request.getfixturevalue("pg_url")
    proc = ServerProcess(db, workdir).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One real server on a SQLite file, for tests that need only one kind."""
    workdir = tmp_path_factory.mktemp("server-sqlite-only")
    proc = ServerProcess(str(workdir / "crowdsource.db"), workdir).start()
    yield proc
    proc.stop()


@pytest.fixture
def new_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory for a private server (to kill, restart or configure); stopped after the test."""
    started: list[ServerProcess] = []

    def make(db: str | None = None, *extra: str) -> ServerProcess:
        proc = ServerProcess(db or str(tmp_path / "crowdsource.db"), tmp_path, *extra).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()
