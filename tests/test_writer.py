"""Group commit: concurrent writes share transactions, and one job's failure is its own."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crowdsource.errors import BadRequest
from crowdsource.server.storage.engine import make_engine, migrate, session_factory
from crowdsource.server.storage.groupcommit import GroupCommit
from crowdsource.server.storage.tables import Participant
from tests.support import run


@pytest.fixture
def writer(tmp_path: Path):
    """A group commit over a fresh SQLite file, counting its commits."""
    engine = make_engine(str(tmp_path / "w.db"))
    migrate(engine)
    commits: list[int] = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    group = GroupCommit(session_factory(engine))
    group.commits = commits  # type: ignore[attr-defined]
    yield group
    group.close()
    engine.dispose()


def add(name: str):
    """A job that registers a participant and returns the name."""

    def write(session: Session, _: None) -> str:
        session.execute(insert(Participant).values(name=name, token_hash=name))
        return name

    return write


def names(group: GroupCommit) -> list[str]:
    """Every stored participant name."""
    with group._sessions() as session:
        return sorted(session.scalars(select(Participant.name)))


async def run_all(group: GroupCommit, jobs) -> list:
    """Queue jobs while the writer is held busy, then let it go; gather their outcomes."""
    gate = threading.Event()
    held = asyncio.ensure_future(group.run(lambda: None, lambda s, _: gate.wait() and "held"))
    await asyncio.sleep(0.05)  # the writer is now waiting in the first job's write
    futures = [asyncio.ensure_future(group.run(lambda: None, job)) for job in jobs]
    await asyncio.sleep(0.05)
    gate.set()
    assert await held == "held"
    return await asyncio.gather(*futures, return_exceptions=True)


def test_waiting_jobs_share_one_commit(writer: GroupCommit) -> None:
    """Jobs that queue while the writer is busy are committed together."""
    before = len(writer.commits)
    out = run(run_all(writer, [add(f"p{i}") for i in range(20)]))
    assert out == [f"p{i}" for i in range(20)]
    assert names(writer) == sorted(f"p{i}" for i in range(20))
    assert len(writer.commits) - before == 1  # the twenty that queued (the held job wrote none)


def test_a_refusal_is_its_callers_alone(writer: GroupCommit) -> None:
    """A job refusing (before writing) gets its error; the others in the batch commit."""

    def refuse(session: Session, _: None) -> str:
        raise BadRequest("no")

    out = run(run_all(writer, [add("a"), refuse, add("b")]))
    assert out[0] == "a" and out[2] == "b"
    assert isinstance(out[1], BadRequest)
    assert names(writer) == ["a", "b"]


def test_a_failing_job_is_retried_alone_and_fails_alone(writer: GroupCommit) -> None:
    """A database error rolls the batch back; every other job is written again, alone."""
    out = run(run_all(writer, [add("a"), add("dup"), add("dup"), add("b")]))
    assert out[:2] == ["a", "dup"] and out[3] == "b"
    assert isinstance(out[2], IntegrityError)
    assert names(writer) == ["a", "b", "dup"]


def test_a_failed_preparation_writes_nothing(writer: GroupCommit) -> None:
    """An error while preparing (scoring) goes to its caller; nothing is written for it."""

    async def go() -> None:
        with pytest.raises(ZeroDivisionError):
            await writer.run(lambda: 1 / 0, add("never"))
        assert await writer.run(lambda: None, add("after")) == "after"

    run(go())
    assert names(writer) == ["after"]


def test_jobs_are_prepared_while_the_writer_writes(writer: GroupCommit) -> None:
    """Scoring the next submissions does not wait for a transaction to commit: jobs are
    prepared while the writer is held in another job's write."""
    prepared = threading.Event()

    async def go() -> None:
        gate = threading.Event()
        held = asyncio.ensure_future(writer.run(lambda: None, lambda s, _: gate.wait() and 1))
        await asyncio.sleep(0.05)
        after = asyncio.ensure_future(writer.run(prepared.set, add("after")))
        ready = await asyncio.to_thread(prepared.wait, 30)
        gate.set()
        assert ready and await held == 1 and await after == "after"

    run(go())
