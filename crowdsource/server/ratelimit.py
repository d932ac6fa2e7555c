"""A per-participant token bucket for writes: bursts allowed, sustained floods refused. One
server process keeps its buckets in memory; several (on PostgreSQL, or `--processes` on
SQLite) keep them in the database, so that N servers give the limit once, not N times."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import text

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


class SharedRateLimiter(RateLimiter):
    """The same buckets, in the database's `write_buckets` table: one INSERT ... ON CONFLICT
    DO UPDATE ... RETURNING per write, on PostgreSQL in autocommit (one round trip)."""

    def __init__(
        self, *, rate: float, burst: float, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(rate=rate, burst=burst, clock=clock)  # the servers' common clock
        self.store = store
        self._statement = text(take_statement(store.dialect))

    async def take(self, key: int) -> None:
        """Take one token for `key` from the shared bucket, or raise RateLimited."""
        if self.rate <= 0:
            return
        tokens, granted = await self.store.in_thread(self._take, key)
        if not granted:
            raise refused(self.rate, self.burst, tokens)

    def _take(self, key: int) -> tuple[float, bool]:
        """Run the statement on a database thread."""
        values = {"key": key, "burst": float(self.burst), "rate": self.rate, "now": self.clock()}
        engine = self.store.engine
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                row = conn.execute(self._statement, values).one()
        else:
            with engine.begin() as conn:
                row = conn.execute(self._statement, values).one()
        return float(row[0]), bool(row[1])
