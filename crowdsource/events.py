"""Events: published after each commit, fanned out to subscribers in this process and,
on PostgreSQL, to every server process through LISTEN/NOTIFY."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from tornado.ioloop import IOLoop

from crowdsource.timeutil import iso, utcnow

log = logging.getLogger(__name__)
CHANNEL = "crowdsource_events"
NOTIFY_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more
TYPES = (
    "competition.created",
    "competition.closed",
    "competition.resolved",
    "submission.scored",
    "submission.failed",
    "leaderboard.changed",
)


@dataclass(frozen=True)
class Event:
    """Something that happened, as the event stream sends it."""

    type: str
    competition_id: int
    data: dict[str, Any] = field(default_factory=dict)
    at: str = field(default_factory=lambda: iso(utcnow()) or "")

    def to_json(self) -> str:
        """The wire form."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Event:
        """Parse the wire form."""
        return cls(**json.loads(text))


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers on the IOLoop; a subclass carries them across processes."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._loop = IOLoop.current()

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback` with each event; returns the unsubscribe function."""
        self._subscribers.add(callback)
        return lambda: self._subscribers.discard(callback)

    def publish(self, event: Event) -> None:
        """Send an event to every subscriber (callable from any thread)."""
        self._loop.add_callback(self._deliver, event)

    def _deliver(self, event: Event) -> None:
        """Run each subscriber; one failing does not stop the others."""
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", event.type)

    def close(self) -> None:
        """Stop delivering."""
        self._subscribers.clear()


class PostgresEventBus(EventBus):
    """Publishes with NOTIFY; a listener thread per process delivers what any process sent."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        import psycopg

        self._dsn = dsn
        self._send = psycopg.connect(dsn, autocommit=True)
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._listen = psycopg.connect(dsn, autocommit=True)
        self._listen.execute(f"LISTEN {CHANNEL}")
        threading.Thread(target=self._run, name="crowdsource-listen", daemon=True).start()

    def publish(self, event: Event) -> None:
        """NOTIFY every process, this one included (large data is left for each to load)."""
        payload = event.to_json()
        if len(payload.encode()) > NOTIFY_LIMIT:
            payload = Event(event.type, event.competition_id, {}, event.at).to_json()
        with self._send_lock:
            self._send.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    def _run(self) -> None:
        """Receive notifications and hand them to the IOLoop."""
        while not self._stop.is_set():
            try:
                for note in self._listen.notifies(timeout=1.0):
                    super().publish(Event.from_json(note.payload))
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("event listener lost its connection; reconnecting")
                self._reconnect()

    def _reconnect(self) -> None:
        """Open a new listening connection after a failure."""
        import psycopg

        self._stop.wait(1.0)
        self._listen = psycopg.connect(self._dsn, autocommit=True)
        self._listen.execute(f"LISTEN {CHANNEL}")

    def close(self) -> None:
        """Stop the listener and close connections."""
        self._stop.set()
        super().close()
        self._send.close()
