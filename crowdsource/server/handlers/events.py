"""The live event stream: a WebSocket that pushes every event, optionally for one competition."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tornado import websocket

from crowdsource.errors import CrowdsourceError, DatabaseUnavailable
from crowdsource.server.events import Event
from crowdsource.server.service import Service
from crowdsource.server.storage.engine import unavailable

log = logging.getLogger("crowdsource.server")


class EventsHandler(websocket.WebSocketHandler):
    """`/api/v1/events?competition=ID&token=...`."""

    _unsubscribe: Callable[[], None] | None = None

    def check_origin(self, origin: str) -> bool:
        """Accept the configured origins (events carry only public data)."""
        allowed = self.settings.get("allow_origins", [])
        return "*" in allowed or origin in allowed or super().check_origin(origin)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the query before upgrading, so mistakes get a JSON error."""
        if self.request.headers.get("Upgrade", "").lower() != "websocket":
            self._refuse(
                400, "bad_request", "this is a WebSocket endpoint; connect with a WebSocket client"
            )
            return
        comp = self.get_argument("competition", None)
        if comp is not None and not comp.isdigit():
            self._refuse(400, "bad_request", "'competition' must be a competition id")
            return
        self.competition = int(comp) if comp else None
        token = self.get_argument("token", None)
        service: Service = self.settings["service"]
        if token:
            try:
                await service.authenticate(token)
            except CrowdsourceError as exc:
                self._refuse(401, "unauthorized", exc.message)
                return
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self.set_header("Retry-After", str(DatabaseUnavailable.retry_after))
                self._refuse(503, DatabaseUnavailable.code, DatabaseUnavailable().message)
                return
        await super().get(*args, **kwargs)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a plain-HTTP JSON error instead of upgrading."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish({"error": code, "message": message, "status": status})

    def open(self, *args: str, **kwargs: str) -> None:
        """Subscribe, then greet so the client knows to resync."""
        service: Service = self.settings["service"]
        self._unsubscribe = service.listen(self._on_event)
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
