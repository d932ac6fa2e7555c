"""One exception hierarchy for the client, each carrying the server's message; the server's
error codes and statuses come from the protocol's table."""

from __future__ import annotations

from typing import Any

from crowdsource.protocol.errors import CODE_OF_STATUS

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "Closed",
    "Conflict",
    "ConnectionFailed",
    "CrowdsourceError",
    "DatabaseUnavailable",
    "Forbidden",
    "IdentityExists",
    "InvalidCompetition",
    "InvalidSubmission",
    "MethodNotAllowed",
    "NotFound",
    "NotOpen",
    "QuotaExceeded",
    "RateLimited",
    "ServerError",
    "Timeout",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnknownIdentity",
    "UnsupportedMediaType",
    "error_from_code",
    "error_from_response",
]


class CrowdsourceError(Exception):
    """Base of every client error; `str(e)` is the message a person can act on."""

    code: str = "error"

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.body = body

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again, if the server said (a 429 or 503 does)."""
        value = self.body.get("retry_after") if isinstance(self.body, dict) else None
        return float(value) if isinstance(value, int | float) else None


class IdentityExists(CrowdsourceError):
    """An identity of that name is already saved for that server (never replaced)."""

    code = "identity_exists"


class UnknownIdentity(CrowdsourceError):
    """No identity of that name is saved for that server."""

    code = "unknown_identity"


class ConnectionFailed(CrowdsourceError):
    """The server could not be reached (wrong URL, server down, network failure)."""

    code = "connection_failed"


class Timeout(CrowdsourceError):
    """Waiting for the server, or for an event, took longer than allowed."""

    code = "timeout"


class UnexpectedResponse(CrowdsourceError):
    """The server answered something that is not the crowdsource API."""

    code = "unexpected_response"


class BadRequest(CrowdsourceError):
    """400: the request was malformed."""

    code = "bad_request"


class Unauthorized(CrowdsourceError):
    """401: no token, or a token the server does not know."""

    code = "unauthorized"


class Forbidden(CrowdsourceError):
    """403: the token is valid but may not do this."""

    code = "forbidden"


class NotFound(CrowdsourceError):
    """404: no such competition, submission or route."""

    code = "not_found"


class MethodNotAllowed(CrowdsourceError):
    """405: the route does not take this method."""

    code = "method_not_allowed"


class Conflict(CrowdsourceError):
    """409: the request conflicts with the current state (e.g. a name already taken)."""

    code = "conflict"


class Closed(Conflict):
    """409: the competition is closed."""

    code = "closed"


class NotOpen(Conflict):
    """409: the competition has not opened yet."""

    code = "not_open"


class BodyTooLarge(CrowdsourceError):
    """413: the upload is larger than the server accepts."""

    code = "body_too_large"


class UnsupportedMediaType(CrowdsourceError):
    """415: the body's content type is not accepted here."""

    code = "unsupported_media_type"


class InvalidSubmission(CrowdsourceError):
    """422: the predictions do not fit the competition (missing ids, NaN, columns...)."""

    code = "invalid_submission"


class InvalidCompetition(CrowdsourceError):
    """422: the competition definition is not valid."""

    code = "invalid_competition"


class QuotaExceeded(CrowdsourceError):
    """429: the daily submission limit is used up; see `resets_at` and `retry_after`."""

    code = "quota_exceeded"

    @property
    def resets_at(self) -> str | None:
        """When the quota resets (ISO UTC), as the server said."""
        return self.body.get("resets_at") if isinstance(self.body, dict) else None


class RateLimited(CrowdsourceError):
    """429: too many requests; slow down."""

    code = "rate_limited"


class ServerError(CrowdsourceError):
    """5xx: the server failed; trying again later may work."""

    code = "server_error"


class Unavailable(ServerError):
    """503: the server cannot do this now; nothing was recorded, so send it again after
    `retry_after` seconds."""

    code = "unavailable"


class DatabaseUnavailable(ServerError):
    """503: the server lost its database for a moment; send the same request again after
    `retry_after` seconds (a submission with its Idempotency-Key)."""

    code = "database_unavailable"


# Every code of the protocol's table has its class (an unknown code falls back to its status).
_BY_CODE: dict[str, type[CrowdsourceError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        Closed,
        NotOpen,
        BodyTooLarge,
        UnsupportedMediaType,
        InvalidSubmission,
        InvalidCompetition,
        QuotaExceeded,
        RateLimited,
        Unavailable,
        DatabaseUnavailable,
    )
} | {"internal": ServerError}
_BY_STATUS: dict[int, type[CrowdsourceError]] = {
    status: _BY_CODE[code] for status, code in CODE_OF_STATUS.items()
}


def error_from_response(status: int, body: Any, fallback: str) -> CrowdsourceError:
    """Build the matching error from an HTTP status and the server's JSON error body."""
    code = body.get("error") if isinstance(body, dict) else None
    message = body.get("message") if isinstance(body, dict) else None
    cls = _BY_CODE.get(str(code)) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else CrowdsourceError
    return cls(str(message or fallback), status=status, body=body)


def error_from_code(code: str, message: str) -> CrowdsourceError:
    """The client error for a server error code, raised here without a response (the
    pre-flight check runs the server's own checks locally)."""
    return _BY_CODE.get(code, CrowdsourceError)(message)
