"""Group commit: write jobs from many requests run on one thread, as many to a transaction
as are waiting, so concurrent submissions share a commit instead of queueing for the lock;
another thread prepares (scores) the next jobs while a transaction waits on the database."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from crowdsource.errors import CrowdsourceError
from crowdsource.server.storage.engine import unavailable
from crowdsource.server.storage.locks import Lock, take

log = logging.getLogger(__name__)
P = TypeVar("P")
R = TypeVar("R")


@dataclass
class _Job(Generic[P, R]):
    """One caller's work: `prepare()` outside the transaction, then `write(session, prepared)`
    holding `locks`."""

    write: Callable[[Session, P], R]
    prepare: Callable[[], P]
    future: asyncio.Future[R]
    loop: asyncio.AbstractEventLoop
    locks: Sequence[Lock]
    prepared: Any = field(default=None)

    def settle(self, result: Any = None, error: BaseException | None = None) -> None:
        """Hand the outcome back to the caller's event loop."""
        self.loop.call_soon_threadsafe(_resolve, self.future, result, error)


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Complete a caller's future, unless the caller gave up on it."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class GroupCommit:
    """A preparing thread runs each job's `prepare` as the job comes; one writer thread
    writes what is prepared, each transaction every job waiting, up to `most`.

    A job's `write` must raise a CrowdsourceError (a refusal) only before it writes anything:
    the refusal goes back to its caller and the other jobs still commit. Any other failure
    rolls the whole transaction back and each job is run again alone, so one bad job never
    fails another. A caller hears back only after its transaction committed.

    A job names the advisory locks its write needs; a transaction takes those of all its jobs
    up front, in the one order, so two writers (two server processes) never deadlock."""

    def __init__(self, sessions: sessionmaker[Session], *, most: int = 64) -> None:
        self._sessions = sessions
        self._most = most
        self._jobs: queue.SimpleQueue[_Job[Any, Any] | None] = queue.SimpleQueue()
        self._prepared: queue.SimpleQueue[_Job[Any, Any] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._prepare, name="crowdsource-prepare", daemon=True),
            threading.Thread(target=self._run, name="crowdsource-writer", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def run(
        self,
        prepare: Callable[[], P],
        write: Callable[[Session, P], R],
        *,
        locks: Sequence[Lock] = (),
    ) -> R:
        """`write(session, prepare())` on the writer thread holding `locks`, committed with
        whatever else waits."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._jobs.put(_Job(write, prepare, future, loop, locks))
        return await future

    def close(self) -> None:
        """Finish the waiting jobs, then stop the threads."""
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout=10)

    def _prepare(self) -> None:
        """Prepare jobs in order, handing each to the writer, until closed."""
        while (job := self._jobs.get()) is not None:
            try:
                job.prepared = job.prepare()
            except BaseException as exc:  # handed to the caller; nothing is written
                job.settle(error=exc)
            else:
                self._prepared.put(job)
        self._prepared.put(None)

    def _run(self) -> None:
        """Write prepared jobs in batches until closed."""
        while True:
            first = self._prepared.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._most:
                try:
                    job = self._prepared.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._prepared.put(None)  # stop after this batch
                    break
                batch.append(job)
            self._batch(batch)

    def _batch(self, ready: list[_Job[Any, Any]]) -> None:
        """Write prepared jobs in one transaction."""
        outcomes: list[tuple[_Job[Any, Any], Any, BaseException | None]] = []
        try:
            with self._sessions.begin() as session:
                take(session, [lock for job in ready for lock in job.locks])
                for job in ready:
                    try:
                        outcomes.append((job, job.write(session, job.prepared), None))
                    except CrowdsourceError as exc:
                        outcomes.append((job, None, exc))
        except BaseException as exc:  # rolled back: retried, or handed back
            if len(ready) == 1:
                ready[0].settle(error=exc)
                return
            log.info("a group commit of %d failed (%s); writing each alone", len(ready), exc)
            for i, job in enumerate(ready):
                error = self._alone(job)
                if unavailable(error):  # the database is away: the others fail alike, now
                    for rest in ready[i + 1 :]:
                        rest.settle(error=error)
                    return
            return
        for job, result, error in outcomes:
            job.settle(result, error)

    def _alone(self, job: _Job[Any, Any]) -> BaseException | None:
        """Write one job in its own transaction; returns what it failed with, if it did."""
        try:
            with self._sessions.begin() as session:
                take(session, job.locks)
                result = job.write(session, job.prepared)
        except BaseException as exc:  # handed to the caller
            job.settle(error=exc)
            return exc
        job.settle(result)
        return None
