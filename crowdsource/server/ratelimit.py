"""A per-participant token bucket for writes: bursts allowed, sustained floods refused. One
server process keeps its buckets in memory; several keep them where they all see them, so
that N servers give the limit once, not N times: on PostgreSQL in the database, on SQLite
(whose processes are all on one machine) in a file beside the database, where a write takes
a few system calls and never the database's write lock."""

from __future__ import annotations

import fcntl
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url

from crowdsource.errors import RateLimited

if TYPE_CHECKING:
    from crowdsource.server.storage.store import Store


def refused(rate: float, burst: float, tokens: float) -> RateLimited:
    """The refusal of a write when `tokens` (under one) are left."""
    wait = (1 - tokens) / rate
    return RateLimited(
        f"too many writes: at most {rate * 60:g} a minute (bursts of {burst:g}); retry in "
        f"{wait:.1f} s",
        retry_after=wait,
    )


@dataclass
class RateLimiter:
    """`rate` writes per second sustained, `burst` at once; keyed by participant id; in this
    process's memory."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    async def take(self, key: int) -> None:
        """Take one token for `key`, or raise RateLimited saying when to retry."""
        self.check(key)

    def check(self, key: int) -> None:
        """Take one token for `key` now, or raise RateLimited."""
        if self.rate <= 0:
            return
        now = self.clock()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            raise refused(self.rate, self.burst, tokens)
        self._buckets[key] = (tokens - 1, now)


# One statement per write: refill by the time passed, take a token if there is one, and say
# whether it was taken. `at` never goes back, so servers whose clocks differ a little only
# refill a little late. {least} and {greatest} are the dialect's two-argument min and max.
TAKE = """
INSERT INTO write_buckets (participant_id, tokens, at, granted)
VALUES (:key, :burst - 1, :now, true)
ON CONFLICT (participant_id) DO UPDATE SET
  tokens = CASE WHEN {refill} >= 1 THEN {refill} - 1 ELSE {refill} END,
  granted = {refill} >= 1,
  at = {greatest}(write_buckets.at, :now)
RETURNING tokens, granted
"""
REFILL = (
    "{least}(:burst, write_buckets.tokens"
    " + ({greatest}(:now, write_buckets.at) - write_buckets.at) * :rate)"
)


def take_statement(dialect: str) -> str:
    """The bucket statement in `dialect` (postgresql or sqlite)."""
    names = {"least": "LEAST", "greatest": "GREATEST"}
    if dialect == "sqlite":
        names = {"least": "MIN", "greatest": "MAX"}
    refill = REFILL.format(**names)
    return TAKE.format(refill=refill, **names)


SLOT = struct.Struct("<dd")  # a bucket in the file: tokens, at (0.0: never used)


class BucketFile:
    """Buckets of the processes of one machine, in a file: participant `key`'s bucket is the
    16 bytes at `key * 16`, read and written under a POSIX lock on those bytes alone, with the
    arithmetic of the database's statement (`TAKE`). The lock is the process's: callers take
    from one thread (the event loop)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

    def take(self, key: int, *, rate: float, burst: float, now: float) -> tuple[float, bool]:
        """Refill `key`'s bucket by the time passed, take a token if there is one; returns
        the tokens left and whether one was taken."""
        offset = key * SLOT.size
        fcntl.lockf(self.fd, fcntl.LOCK_EX, SLOT.size, offset)
        try:
            raw = os.pread(self.fd, SLOT.size, offset)
            tokens, at = SLOT.unpack(raw) if len(raw) == SLOT.size else (0.0, 0.0)
            if at == 0.0:
                tokens, granted, at = burst - 1, True, now
            else:
                tokens = min(burst, tokens + (max(now, at) - at) * rate)
                granted = tokens >= 1
                tokens, at = (tokens - 1 if granted else tokens), max(at, now)
            os.pwrite(self.fd, SLOT.pack(tokens, at), offset)
            return tokens, granted
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, SLOT.size, offset)

    def __del__(self) -> None:
        """Close the file with the limiter."""
        os.close(self.fd)


def bucket_file(store: Store) -> BucketFile | None:
    """The bucket file beside a SQLite database file (None for PostgreSQL or memory)."""
    url = make_url(store.url)
    if store.dialect != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return BucketFile(f"{url.database}-buckets")


class SharedRateLimiter(RateLimiter):
    """The same buckets, shared: beside a SQLite file in a `BucketFile`, else in the
    database's `write_buckets` table (one INSERT ... ON CONFLICT DO UPDATE ... RETURNING per
    write, on PostgreSQL in autocommit: one round trip)."""

    def __init__(
        self, *, rate: float, burst: float, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(rate=rate, burst=burst, clock=clock)  # the servers' common clock
        self.store = store
        self._statement = text(take_statement(store.dialect))
        self._file = bucket_file(store) if rate > 0 else None

    async def take(self, key: int) -> None:
        """Take one token for `key` from the shared bucket, or raise RateLimited."""
        if self.rate <= 0:
            return
        if self._file is not None:  # a few system calls: no database thread needed
            tokens, granted = self._take(key)
        else:
            tokens, granted = await self.store.in_thread(self._take, key)
        if not granted:
            raise refused(self.rate, self.burst, tokens)

    def _take(self, key: int) -> tuple[float, bool]:
        """Take from the file, or run the statement (on a database thread)."""
        now = self.clock()
        if self._file is not None:
            return self._file.take(key, rate=self.rate, burst=float(self.burst), now=now)
        values = {"key": key, "burst": float(self.burst), "rate": self.rate, "now": now}
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                row = conn.execute(self._statement, values).one()
        else:
            with engine.begin() as conn:
                row = conn.execute(self._statement, values).one()
        return float(row[0]), bool(row[1])
