"""UTC times: parsing what people send and formatting what the API returns."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from crowdsource.errors import BadRequest

# Times are kept as aware UTC; these bound what can be stored and computed with (a day of
# margin each side, so that "the day after" or "a day before" never overflows).
EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)
_DURATION = re.compile(r"\+?(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 text of an aware time, or None."""
    return None if value is None else value.isoformat()


def parse_time(value: Any, *, field: str) -> datetime | None:
    """An ISO 8601 time (naive means UTC) as aware UTC within the storable range, or None for
    null; anything else is a BadRequest naming the field."""
    if value is None:
        return None
    example = "use e.g. 2026-12-01T12:00:00Z"
    if not isinstance(value, str) or len(value) > 64:
        raise BadRequest(f"'{field}' must be an ISO 8601 time like 2026-12-01T12:00:00Z, or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"'{field}' is not an ISO 8601 time ({value!r}); {example}") from exc
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    try:
        utc = parsed.astimezone(timezone.utc)  # overflows past year 9999 or before year 1
    except OverflowError:
        raise BadRequest(_out_of_range(field, value)) from None
    return in_range(utc, field=field)


def in_range(value: datetime, *, field: str) -> datetime:
    """The time itself if it lies within the storable range, else a BadRequest."""
    if not EARLIEST <= value <= LATEST:
        raise BadRequest(_out_of_range(field, value.isoformat()))
    return value


def _out_of_range(field: str, value: str) -> str:
    """The message for a time outside the storable range."""
    first, last = EARLIEST.date().isoformat(), LATEST.date().isoformat()
    return f"'{field}' must lie between {first} and {last} (UTC); got {value!r}"


def parse_duration(text: str) -> timedelta | None:
    """A duration such as `+30m`, `2h`, `7d` or `1.5d`, or None if the text is not one;
    a ValueError if it is one but too long to add to a date."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        return None
    try:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    except OverflowError as exc:
        raise ValueError(f"the duration {text[:40]!r} is too long; give a nearer time") from exc


def from_now(delta: timedelta, *, now: datetime | None = None) -> datetime:
    """The UTC time `delta` from now; a ValueError if that falls outside the storable range."""
    start = now or utcnow()
    try:
        when = start + delta
    except OverflowError:
        when = LATEST + timedelta(days=1) if delta > timedelta(0) else EARLIEST - timedelta(days=1)
    if not EARLIEST <= when <= LATEST:
        raise ValueError(f"{delta} from now is outside the years 1 to 9999; give a nearer time")
    return when


def next_midnight(now: datetime) -> datetime:
    """The start of the next UTC day, when daily limits reset."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)
