"""The base of every API handler: one JSON error shape, tokens, bounded streamed bodies,
CORS, and DataFrames by content negotiation."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from asyncio import Future
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, NoReturn

from tornado import web
from tornado.ioloop import IOLoop

from crowdsource import frames
from crowdsource.errors import (
    BadRequest,
    CrowdsourceError,
    DatabaseUnavailable,
    NotFound,
    QuotaExceeded,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from crowdsource.protocol.errors import CODE_OF_STATUS
from crowdsource.protocol.types import MAX_ID
from crowdsource.server.competitions import CompetitionManager
from crowdsource.server.ensemble import EnsembleManager
from crowdsource.server.leaderboards import LeaderboardManager
from crowdsource.server.participants import ParticipantManager
from crowdsource.server.standings import StandingsManager
from crowdsource.server.storage.engine import unavailable
from crowdsource.server.storage.tables import Participant
from crowdsource.server.submissions import SubmissionManager
from crowdsource.server.teams import TeamManager
from crowdsource.times import utcnow

log = logging.getLogger("crowdsource.server")

# Statuses without a raised error (Tornado's own 404, 405, ...): the protocol's code for each.
CODES = CODE_OF_STATUS


# A refusal decided before the body is read leaves the connection usable only once the body
# is read too (else its bytes would be taken for the next request, so Tornado closes the
# connection); bodies up to this size are read and dropped, larger ones get `Connection: close`.
DRAIN_BYTES = 64 * 1024
# JSON bodies larger than this are parsed on a thread, so other requests are not held up;
# at most two at a time, so that a burst of large bodies queues instead of filling memory.
INLINE_JSON_BYTES = 64 * 1024
_parsing = ThreadPoolExecutor(2, thread_name_prefix="crowdsource-json")
ID_ROUTE = r"([^/]+)"  # any segment: path_id() says what is wrong with a malformed one
WRITES = ("POST", "PUT", "PATCH", "DELETE")  # the methods that count against --write-rate
FLAGS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class BodyTooLarge(CrowdsourceError):
    """A request body over the configured limit."""

    code = "body_too_large"


def as_id(text: str) -> int | None:
    """A row id written as text: a whole number within the databases' integer range, or None
    (so 5,000 digits never reach the database, where they would overflow)."""
    if text.isascii() and text.isdigit() and len(text) <= 10 and 1 <= int(text) <= MAX_ID:
        return int(text)
    return None


def path_id(text: str, what: str) -> int:
    """An id from a URL path, else a 404 (no such row can exist)."""
    value = as_id(text)
    if value is None:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise NotFound(f"no {what} {shown!r}: {what} ids are whole numbers from 1 to {MAX_ID}")
    return value


def query_id(text: str | None, name: str) -> int | None:
    """An optional id from a query parameter, else a 400."""
    if not text:
        return None
    value = as_id(text)
    if value is None:
        raise BadRequest(f"'{name}' must be an id, a whole number from 1 to {MAX_ID}")
    return value


def query_flag(text: str | None, name: str, default: bool) -> bool:
    """An optional true/false query parameter."""
    if text is None:
        return default
    value = FLAGS.get(text.strip().lower())
    if value is None:
        raise BadRequest(f"'{name}' must be true or false")
    return value


def retry_after(exc: BaseException | None) -> int | None:
    """Whole seconds to wait before asking again, for an error that says so."""
    if isinstance(exc, QuotaExceeded):
        return max(0, int((exc.resets_at - utcnow()).total_seconds()) + 1)
    if isinstance(exc, RateLimited | DatabaseUnavailable | Unavailable):
        return max(1, round(exc.retry_after))
    return None


class JSONErrors(web.RequestHandler):
    """Errors as one JSON shape, {"error", "message", "status"}, on any handler."""

    def closes_connection(self) -> bool:
        """Whether the connection closes after an error answer (the body was read: no)."""
        return False

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as one JSON shape; no traceback ever leaves the server."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if unavailable(exc):
            exc = DatabaseUnavailable()
        if isinstance(exc, CrowdsourceError):
            status_code, code, message = exc.status, exc.code, exc.message
        elif isinstance(exc, web.HTTPError) and exc.log_message:
            code, message = CODES.get(status_code, "error"), exc.log_message % exc.args
        elif status_code == 405:
            code = "method_not_allowed"
            message = f"{self.request.method} is not allowed on {self.request.path}"
        elif status_code == 404:
            code = "not_found"
            message = (
                f"nothing at {self.request.path}; the API is described at /api/v1/openapi.json"
            )
        elif status_code >= 500:
            code, message = "internal", "the server failed on this request; it is logged"
        else:
            code, message = CODES.get(status_code, "error"), HTTPStatus(status_code).phrase
        self.set_status(status_code)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        if self.closes_connection():  # say so, so that clients do not reuse it
            self.set_header("Connection", "close")
        body: dict[str, Any] = {"error": code, "message": message, "status": status_code}
        retry = retry_after(exc)
        if retry is not None:  # the same wait in the header and in the body
            self.set_header("Retry-After", str(retry))
            body["retry_after"] = retry
        if isinstance(exc, QuotaExceeded):
            body["resets_at"] = exc.resets_at.isoformat()
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Log a person's mistake in one line; log real faults with their traceback."""
        if isinstance(value, CrowdsourceError):
            log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        elif unavailable(value):  # one line each while the database is away, not a traceback
            first = (str(getattr(value, "orig", None) or value).splitlines() or [""])[0]
            log.warning(
                "%s %s: database unavailable: %s", self.request.method, self.request.path, first
            )
        else:
            super().log_exception(typ, value, tb)


@web.stream_request_body
class APIHandler(JSONErrors):
    """JSON in and out, errors as {"error", "message", "status"}."""

    viewer: Participant | None = None
    _spool: Any = None  # the file a large body goes to, chunk by chunk
    gone = False  # the client closed the connection: what it asked is not to be recorded

    @property
    def participants(self) -> ParticipantManager:
        """Participants and their tokens."""
        return self.settings["participant_manager"]

    @property
    def competitions(self) -> CompetitionManager:
        """Competitions."""
        return self.settings["competition_manager"]

    @property
    def submissions(self) -> SubmissionManager:
        """Submissions."""
        return self.settings["submission_manager"]

    @property
    def leaderboards(self) -> LeaderboardManager:
        """Leaderboards and the live push."""
        return self.settings["leaderboard_manager"]

    @property
    def teams(self) -> TeamManager:
        """Teams."""
        return self.settings["team_manager"]

    @property
    def ensembles(self) -> EnsembleManager:
        """The crowd's ensemble."""
        return self.settings["ensemble_manager"]

    @property
    def standings(self) -> StandingsManager:
        """Standings across the rounds of a competition type."""
        return self.settings["standings_manager"]

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
            self.set_header(
                "Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            )
            self.set_header("Access-Control-Expose-Headers", "Retry-After")

    frame_methods: tuple[str, ...] = ()  # methods whose body may hold frames (large limit)
    _admitted = False  # prepare() ended: the body is read before any answer goes out
    _cut_short = False  # answered before the whole body arrived: the connection must close
    _refusal: Exception | None = None

    @property
    def body_limit(self) -> int:
        """The largest body this request may carry: frames get --max-body-mb, everything
        else (registration, small JSON) --max-json-kb."""
        if self.request.method in self.frame_methods:
            return int(self.settings["max_body_size"])
        return int(self.settings["max_json_size"])

    async def prepare(self) -> None:
        """Start a bounded body and identify the caller; a refusal of a request with a small
        body waits for that body (so the connection stays usable), a larger one is at once."""
        self._chunks: list[bytes] = []
        self._size = 0
        # Tornado's own check (a bare 400) only backs ours up, for chunks declaring absurd sizes
        connection: Any = self.request.connection  # an HTTP1Connection
        connection.set_max_body_size(2 * self.body_limit + DRAIN_BYTES)
        if self.request.method not in self.frame_methods:  # 64 KiB need not take an hour
            connection.set_body_timeout(self.settings["small_body_timeout"])
        try:
            await self.admit()
        except (CrowdsourceError, web.HTTPError) as exc:
            declared = self.request.headers.get("Content-Length", "0")
            chunked = "Transfer-Encoding" in self.request.headers
            if chunked or not (declared.isdigit() and int(declared) <= DRAIN_BYTES):
                self._cut_short = True
                raise
            self._refusal = exc  # raised in place of the method, once the body is in
            setattr(self, self.request.method.lower(), self._refuse)
        self._admitted = True

    async def admit(self) -> None:
        """Check the caller's token, and refuse an oversized body before reading it."""
        auth = self.request.headers.get("Authorization")
        if auth is not None:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send the token as 'Authorization: Bearer <token>'")
            self.viewer = await self.participants.authenticate(token.strip())
            if self.request.method in WRITES:
                await self.settings["rate_limiter"].take(self.viewer.id)
        if self.request.method in self.frame_methods:
            self.participant  # noqa: B018 - large bodies only from a known caller, unread else
        declared = self.request.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.body_limit:
            raise BodyTooLarge(self._too_large())

    def _refuse(self, *args: Any) -> NoReturn:
        """Raise the refusal that prepare() decided on."""
        assert self._refusal is not None
        raise self._refusal

    def data_received(self, chunk: bytes) -> None:
        """Keep body chunks up to the limit, in memory while small and in a file once past
        --inline-kb (the process never holds a large body); past the limit, answer 413 and
        close (a chunked body declares no length to refuse it by)."""
        self._size += len(chunk)
        if self._refusal is not None or self._finished:
            return
        if self._size > self.body_limit:
            self._chunks.clear()
            self._drop_spool()
            self._cut_short = True
            self.send_error(413, exc_info=(BodyTooLarge, BodyTooLarge(self._too_large()), None))
            self.on_connection_close()  # the method will not run: stop waiting for the body
        elif self._spool is not None:
            self._spool.write(chunk)
        elif self._size > self.settings["inline_bytes"]:
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
        self.gone = True
        self._drop_spool()
        super().on_connection_close()  # ends the wait for the rest of a streamed body

    def _too_large(self) -> str:
        """The message for an oversized body."""
        if self.request.method not in self.frame_methods:
            limit = self.settings["max_json_size"] / 2**10
            return (
                f"the request body is over the {limit:g} KiB limit for this request; send "
                "only the fields it takes (--max-json-kb sets the limit)"
            )
        limit = self.settings["max_body_size"] / 2**20
        return (
            f"the request body is over the server's {limit:g} MiB limit; send Parquet "
            "(Content-Type: application/vnd.apache.parquet) or ask the operator to raise "
            "--max-body-mb"
        )

    @property
    def upload(self) -> frames.Body:
        """The whole request body, in memory or spooled to a file (413 if over the limit)."""
        if self._size > self.body_limit:
            raise BodyTooLarge(self._too_large())
        if self._spool is not None:
            self._spool.flush()
            return frames.Spooled(self._spool.name, self._size)
        return b"".join(self._chunks)

    async def read_body(self) -> bytes:
        """The whole request body, in memory (a spooled one is read on a thread)."""
        upload = self.upload
        if isinstance(upload, bytes):
            return upload
        return await IOLoop.current().run_in_executor(_parsing, frames.as_bytes, upload)

    async def json_body(self) -> Any:
        """The body parsed as JSON: small ones here, large ones on a thread."""
        upload = self.upload
        if isinstance(upload, bytes) and len(upload) <= INLINE_JSON_BYTES:
            return frames.parse_json(upload)
        return await IOLoop.current().run_in_executor(
            _parsing, lambda: frames.parse_json(frames.as_bytes(upload))
        )

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

    def closes_connection(self) -> bool:
        """Whether an error answer leaves the body unread (refused in prepare, or before it):
        Tornado then closes the connection."""
        return self._cut_short or not self._admitted


class NotFoundHandler(APIHandler):
    """Any unknown route: a JSON 404 that points at the API's index."""

    async def admit(self) -> None:
        """Refuse (once a small body is read, so the connection stays usable)."""
        raise web.HTTPError(
            404, "no route %s; the API is described at /api/v1/openapi.json", self.request.path
        )
