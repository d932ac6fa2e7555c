"""Domain errors: each names what went wrong and what to do; its code's HTTP status is the
protocol's table's business (crowdsource.protocol.errors), not the domain's."""

from __future__ import annotations

from datetime import datetime

from crowdsource.protocol.errors import STATUS


class CrowdsourceError(Exception):
    """Base of every error a person can act on."""

    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status of this error's code."""
        return STATUS.get(self.code, 400)


class BadRequest(CrowdsourceError):
    """The request itself is malformed."""


class Unauthorized(CrowdsourceError):
    """No valid token was given."""

    code = "unauthorized"


class Forbidden(CrowdsourceError):
    """The token is valid but may not do this."""

    code = "forbidden"


class NotFound(CrowdsourceError):
    """The thing asked for does not exist."""

    code = "not_found"


class Conflict(CrowdsourceError):
    """The request clashes with what is stored (a taken name, say)."""

    code = "conflict"


class InvalidCompetition(CrowdsourceError):
    """A competition spec that cannot be hosted."""

    code = "invalid_competition"


class InvalidSubmission(CrowdsourceError):
    """Predictions that cannot be scored."""

    code = "invalid_submission"


class NotOpen(CrowdsourceError):
    """Submitting before a competition opens."""

    code = "not_open"


class Closed(CrowdsourceError):
    """Submitting after a competition closed."""

    code = "closed"


class QuotaExceeded(CrowdsourceError):
    """The daily submission limit is used up."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, resets_at: datetime) -> None:
        super().__init__(message)
        self.resets_at = resets_at


class RateLimited(CrowdsourceError):
    """Too many writes in a short time."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailable(CrowdsourceError):
    """The database cannot be reached just now (restarting, or connections lost)."""

    code = "database_unavailable"
    retry_after = 2  # seconds: a restart or a reconnect takes about that long

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "the server cannot reach its database just now; try again in a few seconds "
            "(with the same Idempotency-Key, a submission is never recorded twice)"
        )


class TooLarge(CrowdsourceError):
    """A frame over the server's limits (rows, columns, decoded size)."""

    code = "body_too_large"


class Unavailable(CrowdsourceError):
    """The server cannot do this right now; the same request may succeed later."""

    code = "unavailable"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
