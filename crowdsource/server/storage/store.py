"""One database for the managers: engine, sessions, database threads and the group commit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from sqlalchemy import Engine, Table, insert, select
from sqlalchemy.orm import Session

from crowdsource.server.storage.engine import (
    current_revision,
    database_url,
    forget,
    head_revision,
    is_memory,
    make_engine,
    migrate,
    migrating,
    session_factory,
)
from crowdsource.server.storage.groupcommit import GroupCommit
from crowdsource.server.storage.locks import Lock
from crowdsource.server.storage.tables import Setting

SETTINGS = cast(Table, Setting.__table__)
log = logging.getLogger(__name__)
T = TypeVar("T")


class Store:
    """Transactions run on database threads, off the event loop; a submission's scoring and
    recording go through the group commit. The caller of `tx` owns the transaction: domain
    functions take the session and never commit."""

    def __init__(
        self,
        *,
        db: str,
        sqlite_synchronous: str = "NORMAL",
        threads: int = 8,
        pool_size: int = 8,
        max_overflow: int = 8,
    ) -> None:
        self.url = database_url(db)
        self.engine = make_engine(
            self.url,
            synchronous=sqlite_synchronous,
            pool_size=pool_size,
            max_overflow=max_overflow,
        )
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


class RefusedStart(RuntimeError):
    """The server must not serve this database as things are; the message says what to do."""


FINGERPRINT = "secret_fingerprint"


def fingerprint(secret: bytes) -> str:
    """A value that tells secrets apart without revealing them (an HMAC of a constant)."""
    return hmac.new(secret, b"crowdsource server secret", hashlib.sha256).hexdigest()


def prepare_database(
    db: str,
    *,
    upgrade: bool = True,
    secret: bytes | None = None,
    secret_file: str = "",
) -> None:
    """Before any server process serves: create or upgrade the schema (or, without `upgrade`,
    refuse a schema that is not the newest), check the secret against the one the database
    was first served with and, on SQLite, delete predictions stored for submissions a crash
    kept from being recorded (not on PostgreSQL, where a server elsewhere may be between
    storing and recording)."""
    from crowdsource.server.storage.blobs import drop_orphans

    engine = make_engine(database_url(db), pool_size=1, max_overflow=1)
    try:
        if upgrade:
            before, after = migrate(engine)
            if before != after:
                log.info("database schema upgraded from %s to %s", before or "nothing", after)
        else:
            check_schema(engine)
        if secret is not None:
            check_secret(engine, secret, secret_file)
        if engine.dialect.name == "sqlite":
            with session_factory(engine).begin() as session:
                dropped = drop_orphans(session)
            if dropped:
                log.info("deleted %d stored predictions of submissions never recorded", dropped)
    finally:
        engine.dispose()


def upgrade_schema(db: str) -> tuple[str | None, str]:
    """`crowdsource db upgrade`: migrate under the lock; the revisions before and after."""
    engine = make_engine(database_url(db), pool_size=1, max_overflow=0)
    try:
        return migrate(engine)
    finally:
        engine.dispose()


def schema_revision(db: str) -> tuple[str | None, str]:
    """`crowdsource db current`: the database's revision and the newest one."""
    engine = make_engine(database_url(db), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            return current_revision(conn), head_revision()
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Refuse a schema that is not the newest this version knows."""
    with engine.connect() as conn:
        current = current_revision(conn)
    if current != head_revision():
        raise RefusedStart(
            f"the database schema is at revision {current or 'none (empty database)'} and this "
            f"server needs {head_revision()}: run `crowdsource db upgrade --db URL` first, or "
            "start without --no-migrate"
        )


def check_secret(engine: Engine, secret: bytes, secret_file: str) -> None:
    """Store the secret's fingerprint on first start; refuse a server whose secret differs
    (it would refuse the tokens the other servers issue, and they its)."""
    mine = fingerprint(secret)
    with engine.begin() as conn:
        migrating(conn)  # two first starts at once: one stores, the other compares
        stored = conn.scalar(select(SETTINGS.c.value).where(SETTINGS.c.name == FINGERPRINT))
        if stored is None:
            conn.execute(insert(SETTINGS).values(name=FINGERPRINT, value=mine))
            return
    if not hmac.compare_digest(stored, mine):
        raise RefusedStart(
            f"the secret in {secret_file or 'the secret file'} is not the one the servers on "
            "this database use (tokens one issues would be refused by the other): copy the "
            f"secret file of a server already serving this database to {secret_file} (or "
            "point --secret-file at it) and start again"
        )
