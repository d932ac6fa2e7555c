"""The live event stream: a WebSocket that pushes every event, optionally for one competition,
each as much of it as the listener may see."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tornado import websocket

from crowdsource.errors import CrowdsourceError, Unauthorized
from crowdsource.server.events import Event
from crowdsource.server.service import Service
from crowdsource.server.storage.tables import Participant

log = logging.getLogger("crowdsource.server")

# What of each event everyone may see: None for all of it (the host's public text, public
# boards), else the fields named. What a participant sent (a failed submission's reason
# quotes their predicted values) goes to that participant only; an event type not listed
# here shows nobody but its owner any data.
PUBLIC: dict[str, frozenset[str] | None] = {
    "competition.created": None,
    "competition.closed": None,
    "competition.resolved": None,
    "leaderboard.changed": None,
    "submission.scored": frozenset({"submission_id", "participant", "state", "public_score"}),
    "submission.failed": frozenset({"submission_id", "participant", "state", "public_score"}),
}


def owner_id(event: Event) -> int | None:
    """The participant an event is about, if it is about one participant's submission."""
    who = event.data.get("participant")
    return who.get("id") if isinstance(who, dict) else None


def seen_by(event: Event, viewer: Participant | None) -> Event:
    """The event as `viewer` (None: anonymous) may see it: whole for the participant it is
    about, else only its public fields."""
    public = PUBLIC.get(event.type, frozenset())
    if public is None or (viewer is not None and owner_id(event) == viewer.id):
        return event
    data = {k: v for k, v in event.data.items() if k in public}
    return Event(event.type, event.competition_id, data, event.at)


class EventsHandler(websocket.WebSocketHandler):
    """`/api/v1/events?competition=ID`, with the token as `Authorization: Bearer` or
    `?token=` (browsers cannot set headers on a WebSocket)."""

    _unsubscribe: Callable[[], None] | None = None
    viewer: Participant | None = None

    def check_origin(self, origin: str) -> bool:
        """Accept the configured origins (a token travels in the query, never a cookie)."""
        allowed = self.settings.get("allow_origins", [])
        return "*" in allowed or origin in allowed or super().check_origin(origin)

    def set_default_headers(self) -> None:
        """Name the serving process (of `--processes N`), for operators and tests."""
        self.set_header("X-Crowdsource-Process", str(self.settings.get("process", 1)))

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the query and the token before upgrading, so mistakes get a JSON error."""
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
        service: Service = self.settings["service"]
        try:
            token = self._token()
            if token is not None:
                self.viewer = await service.authenticate(token)
        except CrowdsourceError as exc:
            self._refuse(401, "unauthorized", exc.message)
            return
        await super().get(*args, **kwargs)

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
        """Forward one event, as this listener may see it, if it matches the filter."""
        if self.competition is not None and event.competition_id != self.competition:
            return
        try:
            self.write_message(seen_by(event, self.viewer).to_json())
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
