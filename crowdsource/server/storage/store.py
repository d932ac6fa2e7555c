"""One database for the managers: engine, sessions, database threads and the group commit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from crowdsource.server.storage.engine import (
    database_url,
    forget,
    is_memory,
    make_engine,
    migrate,
    session_factory,
)
from crowdsource.server.storage.groupcommit import GroupCommit
from crowdsource.server.storage.locks import Lock

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    """Transactions run on database threads, off the event loop; a submission's scoring and
    recording go through the group commit. The caller of `tx` owns the transaction: domain
    functions take the session and never commit."""

    def __init__(self, *, db: str, sqlite_synchronous: str = "NORMAL", threads: int = 8) -> None:
        self.url = database_url(db)
        self.engine = make_engine(self.url, synchronous=sqlite_synchronous)
        self.sessions = session_factory(self.engine)
        shared = is_memory(self.url)  # one connection: one thread at a time
        self._threads = ThreadPoolExecutor(1 if shared else threads, thread_name_prefix="cs-db")
        self.writer = GroupCommit(self.sessions)

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def tx_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(session, *args)` in one transaction, on this thread."""
        with self.sessions.begin() as session:
            return fn(session, *args)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on a database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def tx(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(session, *args)` in one transaction on a database thread."""
        return await self.in_thread(self.tx_sync, fn, *args)

    async def write(
        self,
        prepare: Callable[[], Any],
        write: Callable[[Session, Any], T],
        *,
        locks: Sequence[Lock] = (),
    ) -> T:
        """`write(session, prepare())` through the group commit, holding `locks` (see
        GroupCommit: a batch takes all its jobs' locks up front, in one order)."""
        return await self.writer.run(prepare, write, locks=locks)

    def close(self) -> None:
        """Finish waiting writes and running transactions (those not started are dropped),
        then release the connections."""
        self.writer.close()
        self._threads.shutdown(wait=True, cancel_futures=True)
        forget(self.engine)


def prepare_database(db: str) -> None:
    """Before any server process serves: create or upgrade the schema and, on SQLite, delete
    predictions stored for submissions a crash kept from being recorded (not on PostgreSQL,
    where a server elsewhere may be between storing and recording)."""
    from crowdsource.server.storage.blobs import drop_orphans

    engine = make_engine(database_url(db))
    try:
        migrate(engine)
        if engine.dialect.name == "sqlite":
            with session_factory(engine).begin() as session:
                dropped = drop_orphans(session)
            if dropped:
                log.info("deleted %d stored predictions of submissions never recorded", dropped)
    finally:
        engine.dispose()
