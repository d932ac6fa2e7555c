"""The API's error codes and their HTTP statuses: one table for server, client and docs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One error code: its status, what it means, and whether it says when to retry."""

    code: str
    status: int
    meaning: str
    retry: bool = False  # a Retry-After header, and `retry_after` seconds in the body


ERRORS: tuple[ErrorCode, ...] = (
    ErrorCode("bad_request", 400, "the request is malformed; the message says what to fix"),
    ErrorCode("unauthorized", 401, "no token, or one the server does not know"),
    ErrorCode("forbidden", 403, "the token is valid but may not do this"),
    ErrorCode("not_found", 404, "no such competition, submission, participant or route"),
    ErrorCode("method_not_allowed", 405, "the route does not take this method"),
    ErrorCode("conflict", 409, "the request clashes with what is stored (a taken name, say)"),
    ErrorCode("closed", 409, "the competition is closed"),
    ErrorCode("not_open", 409, "the competition has not opened yet"),
    ErrorCode("body_too_large", 413, "the body, or the frame it holds, is over the limits"),
    ErrorCode("unsupported_media_type", 415, "the body's content type is not taken here"),
    ErrorCode("invalid_submission", 422, "predictions that do not fit the competition"),
    ErrorCode("invalid_competition", 422, "a competition spec that cannot be hosted"),
    ErrorCode("rate_limited", 429, "too many writes in a short time; slow down", retry=True),
    ErrorCode(
        "quota_exceeded",
        429,
        "the daily submission limit is used up; `resets_at` says when it resets",
        retry=True,
    ),
    ErrorCode("internal", 500, "the server failed on this request; it is logged"),
    ErrorCode(
        "database_unavailable",
        503,
        "the server lost its database for a moment; send the same request again "
        "(a submission with its Idempotency-Key)",
        retry=True,
    ),
    ErrorCode(
        "unavailable",
        503,
        "the server cannot do this now (too many connections, scoring down or too slow); "
        "nothing was recorded: send it again",
        retry=True,
    ),
)
BY_CODE: dict[str, ErrorCode] = {e.code: e for e in ERRORS}
STATUS: dict[str, int] = {e.code: e.status for e in ERRORS}
# The code of an error known only by its status (the first code of each status in ERRORS).
CODE_OF_STATUS: dict[int, str] = {}
for _error in ERRORS:
    CODE_OF_STATUS.setdefault(_error.status, _error.code)
