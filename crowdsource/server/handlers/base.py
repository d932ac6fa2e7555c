"""The base of every API handler: one JSON error shape, tokens, bounded streamed bodies,
CORS, and DataFrames by content negotiation."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from asyncio import Future
from http import HTTPStatus
from typing import Any

from tornado import web
from tornado.ioloop import IOLoop

from crowdsource import frames
from crowdsource.errors import CrowdsourceError, QuotaExceeded, RateLimited, Unauthorized
from crowdsource.server.service import Service
from crowdsource.server.storage.tables import Participant
from crowdsource.times import utcnow

log = logging.getLogger("crowdsource.server")

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "closed": 409,
    "not_open": 409,
    "invalid_submission": 422,
    "invalid_competition": 422,
    "quota_exceeded": 429,
    "rate_limited": 429,
    "body_too_large": 413,
}
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}


class BodyTooLarge(CrowdsourceError):
    """A request body over the configured limit."""

    code = "body_too_large"


@web.stream_request_body
class APIHandler(web.RequestHandler):
    """JSON in and out, errors as {"error", "message", "status"}."""

    viewer: Participant | None = None
    _spool: Any = None  # the file a large body goes to, chunk by chunk

    @property
    def service(self) -> Service:
        """The server's service facade."""
        return self.settings["service"]

    def set_default_headers(self) -> None:
        """JSON by default; CORS for the configured origins."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        origin = self.request.headers.get("Origin")
        allowed = self.settings.get("allow_origins", [])
        if origin and ("*" in allowed or origin in allowed):
            self.set_header("Access-Control-Allow-Origin", "*" if "*" in allowed else origin)
            self.set_header(
                "Access-Control-Allow-Headers",
                "Authorization, Content-Type, Accept, Idempotency-Key",
            )
            self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.set_header("Access-Control-Expose-Headers", "Retry-After")

    async def prepare(self) -> None:
        """Start a bounded body, and identify the caller from their token."""
        self._chunks: list[bytes] = []
        self._size = 0
        limit = self.settings["max_body_size"]
        self.request.connection.set_max_body_size(limit * 4 + 1024)  # type: ignore[union-attr]
        declared = self.request.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limit * 4:
            raise BodyTooLarge(self._too_large())
        auth = self.request.headers.get("Authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send the token as 'Authorization: Bearer <token>'")
            self.viewer = await self.service.authenticate(token.strip())
            if self.request.method == "POST":
                self.settings["rate_limiter"].check(self.viewer.id)

    def data_received(self, chunk: bytes) -> None:
        """Keep body chunks up to the limit, in memory while small and in a file once past
        --inline-kb (the process never holds a large body); past the limit, count them."""
        self._size += len(chunk)
        if self._size > self.settings["max_body_size"]:
            self._chunks.clear()
            self._drop_spool()
        elif self._spool is not None:
            self._spool.write(chunk)
        elif self._size > self.service.workers.inline_bytes:
            self._spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in finish)
                prefix="crowdsource-body-",
                delete=False,  # mode 600, as mkstemp makes files
            )
            self._spool.writelines([*self._chunks, chunk])
            self._chunks.clear()
        else:
            self._chunks.append(chunk)

    def _drop_spool(self) -> None:
        """Delete a spooled body's file."""
        if self._spool is not None:
            self._spool.close()
            with contextlib.suppress(OSError):
                os.unlink(self._spool.name)
            self._spool = None

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        """Answer; a spooled body's file is deleted before the answer goes out."""
        self._drop_spool()
        return super().finish(chunk)

    def on_connection_close(self) -> None:
        """The client went away mid-request."""
        self._drop_spool()

    def _too_large(self) -> str:
        """The message for an oversized body."""
        limit = self.settings["max_body_size"] / 2**20
        return (
            f"the request body is over the server's {limit:g} MiB limit; send Parquet "
            "(Content-Type: application/vnd.apache.parquet) or ask the operator to raise "
            "--max-body-mb"
        )

    @property
    def upload(self) -> frames.Body:
        """The whole request body, in memory or spooled to a file (413 if over the limit)."""
        if self._size > self.settings["max_body_size"]:
            raise BodyTooLarge(self._too_large())
        if self._spool is not None:
            self._spool.flush()
            return frames.Spooled(self._spool.name, self._size)
        return b"".join(self._chunks)

    @property
    def body(self) -> bytes:
        """The whole request body, in memory."""
        return frames.as_bytes(self.upload)

    def json_body(self) -> Any:
        """The body parsed as JSON."""
        return frames.parse_json(self.body)

    @property
    def participant(self) -> Participant:
        """The caller, who must have sent a token."""
        if self.viewer is None:
            raise Unauthorized(
                "this needs a token: send 'Authorization: Bearer <token>' "
                "(POST /api/v1/participants gives you one)"
            )
        return self.viewer

    def send(self, data: Any, status: int = 200) -> None:
        """Write a JSON answer."""
        self.set_status(status)
        self.finish(json.dumps(data))

    async def send_frame(self, parquet: bytes) -> None:
        """Write a frame: Parquet if the request accepts it, else split-form JSON."""
        if frames.is_parquet(self.request.headers.get("Accept")):
            self.set_header("Content-Type", frames.PARQUET)
            self.finish(parquet)
            return
        text = await IOLoop.current().run_in_executor(
            None, lambda: frames.frame_json(frames.read_parquet(parquet))
        )
        self.finish(text)

    def compute_etag(self) -> None:
        """No ETags: answers are live and marked no-store."""
        return None

    def options(self, *args: Any) -> None:
        """Answer CORS preflight requests."""
        self.set_status(204)
        self.finish()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as one JSON shape; no traceback ever leaves the server."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, CrowdsourceError):
            status_code = STATUS.get(exc.code, 400)
            code, message = exc.code, exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            code, message = CODES.get(status_code, "error"), exc.log_message % exc.args
        elif status_code == 405:
            code = "method_not_allowed"
            message = f"{self.request.method} is not allowed on {self.request.path}"
        elif status_code >= 500:
            code, message = "internal", "the server failed on this request; it is logged"
        else:
            code, message = CODES.get(status_code, "error"), HTTPStatus(status_code).phrase
        self.set_status(status_code)
        if isinstance(exc, QuotaExceeded):
            retry = max(0, int((exc.resets_at - utcnow()).total_seconds()) + 1)
            self.set_header("Retry-After", str(retry))
        if isinstance(exc, RateLimited):
            self.set_header("Retry-After", str(max(1, round(exc.retry_after))))
        self.set_header("Content-Type", "application/json; charset=utf-8")
        body = {"error": code, "message": message, "status": status_code}
        if isinstance(exc, QuotaExceeded):
            body["resets_at"] = exc.resets_at.isoformat()
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Log a person's mistake in one line; log real faults with their traceback."""
        if isinstance(value, CrowdsourceError):
            log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(APIHandler):
    """Any unknown route: a JSON 404 that points at the API's index."""

    async def prepare(self) -> None:
        """Refuse at once."""
        raise web.HTTPError(
            404, "no route %s; the API is described at /api/v1/openapi.json", self.request.path
        )
