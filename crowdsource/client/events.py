"""The server's event stream (`/api/v1/events`) as a blocking, thread-safe iterator."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import websocket

from crowdsource.client.errors import (
    ConnectionFailed,
    CrowdsourceError,
    Timeout,
    error_from_response,
)
from crowdsource.client.models import Event

__all__ = ["EventStream", "events_url"]


def events_url(base_url: str, *, competition: int | None = None, submissions: str = "all") -> str:
    """The WebSocket URL of the event stream for a server's base URL: of one competition or
    of every one; with everyone's submission events (`all`) or only your own (`mine`)."""
    ws_base = "ws" + base_url[len("http") :] if base_url.startswith("http") else base_url
    asked: dict[str, Any] = {} if competition is None else {"competition": competition}
    if submissions != "all":
        asked["submissions"] = submissions
    query = urlencode(asked)
    return f"{ws_base}/api/v1/events" + (f"?{query}" if query else "")


def _bad_status_error(exc: websocket.WebSocketBadStatusException, url: str) -> CrowdsourceError:
    """Turn a refused WebSocket handshake into the matching client error."""
    body: Any = None
    try:
        body = json.loads(exc.resp_body or b"")
    except ValueError:
        body = None
    return error_from_response(exc.status_code, body, f"HTTP {exc.status_code} from {url}")


def _why(payload: bytes) -> str:
    """A close frame's code and reason, as " (4000: fell behind: ...)" (empty if none)."""
    if len(payload) < 2:
        return ""
    code, reason = int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8", "replace")
    return f" ({code}: {reason})" if reason else f" ({code})"


class EventStream:
    """One WebSocket connection to the event stream; `close()` may be called from any thread."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        competition: int | None = None,
        submissions: str = "all",
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = events_url(base_url, competition=competition, submissions=submissions)
        self._token = token
        self._connect_timeout = connect_timeout
        self._ws: websocket.WebSocket | None = None
        self._closed = threading.Event()

    def connect(self) -> EventStream:
        """Open the connection (raises ConnectionFailed or the server's refusal)."""
        headers = [f"Authorization: Bearer {self._token}"] if self._token else []
        try:
            self._ws = websocket.create_connection(
                self.url, timeout=self._connect_timeout, header=headers
            )
        except websocket.WebSocketBadStatusException as exc:
            raise _bad_status_error(exc, self.url) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(f"cannot reach the event stream at {self.url}: {exc}") from None
        if self._closed.is_set():
            self._ws.abort()
        return self

    def receive(self, timeout: float | None = None) -> Event:
        """Wait for the next event; Timeout after `timeout` s, ConnectionFailed when closed."""
        if self._ws is None:
            self.connect()
        assert self._ws is not None
        try:
            data = self._next_message(self._ws, timeout)
        except websocket.WebSocketTimeoutException:
            raise Timeout(f"no event within {timeout} s") from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(f"event stream closed: {exc or 'connection lost'}") from None
        return Event.from_json(json.loads(data))

    @staticmethod
    def _next_message(ws: websocket.WebSocket, timeout: float | None) -> bytes | str:
        """The next data message (ConnectionFailed once closed, saying why) within `timeout` s
        in all: the server's pings are read frame by frame against one deadline, since each
        would otherwise restart the socket's timeout and a quiet stream would never time out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise websocket.WebSocketTimeoutException("deadline passed")
            ws.settimeout(left)
            with ws.readlock:
                opcode, frame = ws.recv_data_frame(control_frame=True)
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                data: bytes | str = frame.data
                return data
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise ConnectionFailed(f"event stream closed by the server{_why(frame.data)}")

    def send(self, message: dict[str, Any]) -> None:
        """Send one JSON text frame (e.g. `{"type": "snapshot"}` to ask for a resync)."""
        if self._ws is None:
            raise ConnectionFailed(f"the event stream at {self.url} is not connected")
        try:
            self._ws.send(json.dumps(message))
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailed(f"event stream closed: {exc or 'connection lost'}") from None

    def __iter__(self) -> Iterator[Event]:
        """Yield events until the connection closes (then ConnectionFailed unless close())."""
        while not self._closed.is_set():
            try:
                yield self.receive()
            except ConnectionFailed:
                if self._closed.is_set():
                    return
                raise

    def close(self) -> None:
        """Close the connection, waking up a thread blocked in `receive`."""
        self._closed.set()
        if self._ws is not None:
            self._ws.abort()
            self._ws.close(timeout=0.2)

    def __enter__(self) -> EventStream:
        return self.connect() if self._ws is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
