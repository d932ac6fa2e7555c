"""The live event stream: a WebSocket that pushes every event, optionally for one competition,
each as much of it as the listener may see."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from tornado import websocket
from tornado.iostream import StreamClosedError

from crowdsource.errors import BadRequest, Forbidden, Unauthorized
from crowdsource.server.events import INTERNAL, RESYNC, Event
from crowdsource.server.handlers.base import JSONErrors, query_id
from crowdsource.server.leaderboards import LeaderboardManager
from crowdsource.server.live import encoded, owner_id, shown, ws_frame
from crowdsource.server.monitoring import metrics
from crowdsource.server.participants import ParticipantManager
from crowdsource.server.storage.tables import Participant


def seen_by(event: Event, viewer: Participant | None) -> Event:
    """The event as `viewer` (None: anonymous) may see it: whole for the participant it is
    about, else only its public fields."""
    return shown(event, whole=viewer is not None and owner_id(event) == viewer.id)


def everyones(text: str | None) -> bool:
    """`submissions=all` (the default: everyone's submission events) or `mine` (your own)."""
    if text in (None, "", "all"):
        return True
    if text == "mine":
        return False
    raise BadRequest(
        "'submissions' must be all (everyone's submission events, the default) or mine "
        "(only your own; the board's changes come either way)"
    )


log = logging.getLogger(__name__)
FELL_BEHIND = 4000  # the close code for a listener whose send queue is full
FELL_BEHIND_REASON = "fell behind: reconnect to resync"
queue_peak = 0  # the most bytes one WebSocket of this process had waiting


class EventsHandler(JSONErrors, websocket.WebSocketHandler):
    """`/api/v1/events?competition=ID`, with the token as `Authorization: Bearer` or
    `?token=` (browsers cannot set headers on a WebSocket). With `competition=`, the live
    board comes as a snapshot then deltas (`LiveBoards`); every frame waits in a bounded
    queue, and a listener that lets it fill is closed."""

    _unsubscribe: Callable[[], None] | None = None
    viewer: Participant | None = None
    others = True  # hears of everyone's submissions (`submissions=all`), or its own only
    _queued = 0  # bytes handed to the connection and not yet written to its socket
    _behind = False

    @property
    def viewer_id(self) -> int | None:
        """The authenticated listener's participant id (None: anonymous)."""
        return None if self.viewer is None else self.viewer.id

    @property
    def leaderboards(self) -> LeaderboardManager:
        """The manager of the boards and of the push."""
        manager: LeaderboardManager = self.settings["leaderboard_manager"]
        return manager

    def check_origin(self, origin: str) -> bool:
        """Accept the configured origins (a token travels in the query, never a cookie)."""
        allowed = self.settings.get("allow_origins", [])
        return "*" in allowed or origin in allowed or super().check_origin(origin)

    def set_default_headers(self) -> None:
        """Name the serving process (of `--processes N`), for operators and tests."""
        self.set_header("X-Crowdsource-Process", str(self.settings.get("process", 1)))

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the handshake, query and token before upgrading, so mistakes get a JSON
        error."""
        problem = self._handshake_problem()
        if problem is not None:
            raise BadRequest(f"{problem}; this is a WebSocket endpoint: use a WebSocket client")
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise Forbidden(f"pages from {origin} may not open the event stream (--allow-origin)")
        self.competition = query_id(self.get_argument("competition", None), "competition")
        self.others = everyones(self.get_argument("submissions", None))
        token = self._token()
        if token is not None:
            participants: ParticipantManager = self.settings["participant_manager"]
            self.viewer = await participants.authenticate(token)
        await super().get(*args, **kwargs)

    def _handshake_problem(self) -> str | None:
        """What the request lacks to be a WebSocket handshake Tornado accepts, if anything."""
        headers = self.request.headers
        connection = [part.strip().lower() for part in headers.get("Connection", "").split(",")]
        if headers.get("Upgrade", "").lower() != "websocket" or "upgrade" not in connection:
            return "send 'Upgrade: websocket' and 'Connection: Upgrade'"
        if not headers.get("Sec-WebSocket-Key"):
            return "send a Sec-WebSocket-Key"
        if headers.get("Sec-WebSocket-Version") not in ("7", "8", "13"):
            return "send Sec-WebSocket-Version: 13"
        return None

    def _token(self) -> str | None:
        """The token from the Authorization header or the query; None if neither has one."""
        auth = self.request.headers.get("Authorization")
        if auth is None:
            return self.get_argument("token", None) or None
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "send the token as 'Authorization: Bearer <token>', or as ?token=<token>"
            )
        return token.strip()

    def open(self, *args: str, **kwargs: str) -> None:
        """Subscribe, greet so the client knows to resync, then send the board's snapshot
        (or, listening to every competition, a change notice per push)."""
        viewer = None if self.viewer is None else self.viewer.id
        self._unsubscribe = self.leaderboards.listen(
            self._on_event, competition=self.competition, viewer=viewer, others=self.others
        )
        self.settings["traffic"].opened(self)  # closed with 1001 when the server stops
        self.send(Event(RESYNC, self.competition or 0, {}).to_json().encode())
        if self.competition is None:
            self.leaderboards.live.everyone.add(self)
        else:
            self.leaderboards.tasks.spawn(self._watch(self.competition))

    async def _watch(self, competition_id: int) -> None:
        """Send the snapshot and follow the board (nothing if it cannot be read)."""
        try:
            await self.leaderboards.live.watch(competition_id, self)
        except Exception as exc:
            log.debug("no live board %s for a listener: %s", competition_id, exc)

    def write_frames(self, frames: bytes) -> None:
        """Queue WebSocket frames, built once for every listener (`ws_frame`); a listener
        with more than the bound waiting is closed with 4000 (it resyncs when it
        reconnects), never waited for."""
        global queue_peak
        connection = self.ws_connection
        if self._behind or connection is None or connection.is_closing():
            return
        stream = connection.stream
        if stream is None:
            return
        if self._queued + len(frames) > self.leaderboards.send_queue_kb * 1024:
            self._behind = True
            self.close(FELL_BEHIND, FELL_BEHIND_REASON)
            return
        try:
            written = stream.write(frames)
        except StreamClosedError:
            self.on_close()
            return
        if written.done():  # straight to the socket: nothing waits
            return
        self._queued += len(frames)
        if self._queued > queue_peak:
            queue_peak = self._queued
            metrics().websocket_queue_peak.set(queue_peak)
        written.add_done_callback(lambda _: self._written(len(frames)))

    def send(self, payload: bytes) -> None:
        """Queue one text frame."""
        self.write_frames(ws_frame(payload))

    def _written(self, size: int) -> None:
        """A frame reached the socket."""
        self._queued -= size

    def _on_event(self, event: Event) -> None:
        """Forward one event, as this listener may see it (the manager hands it only the events
        its filter lets through: `LeaderboardManager.listen`)."""
        if event.type in INTERNAL:
            return
        whole = self.viewer is not None and owner_id(event) == self.viewer.id
        self.write_frames(encoded(event, whole=whole))

    def on_message(self, message: str | bytes) -> None:
        """`{"type": "snapshot"}` asks for a fresh snapshot (a client that missed a
        version); anything else is ignored."""
        try:
            asked = json.loads(message)
        except ValueError:
            return
        wants = isinstance(asked, dict) and asked.get("type") == "snapshot"
        if wants and self.competition is not None and self._unsubscribe is not None:
            self.leaderboards.tasks.spawn(self._watch(self.competition))

    def on_close(self) -> None:
        """Unsubscribe."""
        self.settings["traffic"].closed(self)
        self.leaderboards.live.unwatch(self)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


default_handlers = [(r"/api/v1/events", EventsHandler)]
