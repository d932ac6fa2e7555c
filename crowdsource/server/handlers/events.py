"""The live event stream: a WebSocket that pushes every event, optionally for one competition."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tornado import websocket

from crowdsource.errors import BadRequest, Forbidden
from crowdsource.server.events import Event
from crowdsource.server.handlers.base import JSONErrors, query_id
from crowdsource.server.leaderboards import LeaderboardManager
from crowdsource.server.participants import ParticipantManager


class EventsHandler(JSONErrors, websocket.WebSocketHandler):
    """`/api/v1/events?competition=ID&token=...`."""

    _unsubscribe: Callable[[], None] | None = None

    def check_origin(self, origin: str) -> bool:
        """Accept the configured origins (events carry only public data)."""
        allowed = self.settings.get("allow_origins", [])
        return "*" in allowed or origin in allowed or super().check_origin(origin)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the handshake and query before upgrading, so mistakes get a JSON error."""
        problem = self._handshake_problem()
        if problem is not None:
            raise BadRequest(f"{problem}; this is a WebSocket endpoint: use a WebSocket client")
        origin = self.request.headers.get("Origin")
        if origin is not None and not self.check_origin(origin):
            raise Forbidden(f"pages from {origin} may not open the event stream (--allow-origin)")
        self.competition = query_id(self.get_argument("competition", None), "competition")
        token = self.get_argument("token", None)
        if token:
            participants: ParticipantManager = self.settings["participant_manager"]
            await participants.authenticate(token)
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

    def open(self, *args: str, **kwargs: str) -> None:
        """Subscribe, then greet so the client knows to resync."""
        leaderboards: LeaderboardManager = self.settings["leaderboard_manager"]
        self._unsubscribe = leaderboards.listen(self._on_event)
        self.write_message(Event("hello", self.competition or 0, {}).to_json())

    def _on_event(self, event: Event) -> None:
        """Forward one event if it matches the filter."""
        mine = event.competition_id == self.competition or event.type == "hello"  # a resync
        if self.competition is not None and not mine:
            return
        try:
            self.write_message(event.to_json())
        except websocket.WebSocketClosedError:
            self.on_close()

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; ignore what they send."""

    def on_close(self) -> None:
        """Unsubscribe."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


default_handlers = [(r"/api/v1/events", EventsHandler)]
