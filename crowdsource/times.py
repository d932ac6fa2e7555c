"""UTC times: parsing what people send and formatting what the API returns."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from crowdsource.errors import BadRequest


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of an aware time, or None."""
    return None if value is None else value.isoformat()


def parse_time(value: Any, *, field: str) -> datetime | None:
    """An ISO 8601 time (naive means UTC), or None for null."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"'{field}' must be an ISO 8601 time like 2026-12-01T12:00:00Z, or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(
            f"'{field}' is not an ISO 8601 time ({value!r}); use e.g. 2026-12-01T12:00:00Z"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def next_midnight(now: datetime) -> datetime:
    """The start of the next UTC day, when daily limits reset."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)
