"""A per-participant token bucket for writes: bursts allowed, sustained floods refused."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from crowdsource.errors import RateLimited


@dataclass
class RateLimiter:
    """`rate` writes per second sustained, `burst` at once; keyed by participant id."""

    rate: float
    burst: float
    _buckets: dict[int, tuple[float, float]] = field(default_factory=dict)

    def check(self, key: int) -> None:
        """Take one token for `key`, or raise RateLimited saying when to retry."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            wait = (1 - tokens) / self.rate
            raise RateLimited(
                f"too many writes: at most {self.rate * 60:g} a minute (bursts of "
                f"{self.burst:g}); retry in {wait:.1f} s",
                retry_after=wait,
            )
        self._buckets[key] = (tokens - 1, now)
