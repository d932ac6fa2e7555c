"""Events: published after each commit, fanned out to subscribers in this process and to
every other server process: through LISTEN/NOTIFY on PostgreSQL, through Unix datagram
sockets among the processes of one machine (`--processes` on a SQLite file)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tornado.ioloop import IOLoop

from crowdsource.times import iso, utcnow

log = logging.getLogger(__name__)
CHANNEL = "crowdsource_events"
NOTIFY_LIMIT = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes and more
DATAGRAM_LIMIT = 64 * 1024  # larger events cross processes without their data
JOINED = b""  # the datagram a starting process sends to the others
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
        return json.dumps(
            {
                "type": self.type,
                "competition_id": self.competition_id,
                "data": self.data,
                "at": self.at,
            }
        )

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
        payload = _trimmed(event, NOTIFY_LIMIT).decode()
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


def _trimmed(event: Event, limit: int) -> bytes:
    """The wire form, without the data when it is over `limit` bytes (receivers load it)."""
    payload = event.to_json().encode()
    if len(payload) > limit:
        payload = Event(event.type, event.competition_id, {}, event.at).to_json().encode()
    return payload


def peers_folder(db_url: str) -> Path:
    """Where the server processes of one database find each other's sockets (a short path:
    socket paths are limited to about 100 bytes)."""
    digest = hashlib.sha256(db_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"crowdsource-{digest}"


class SocketEventBus(EventBus):
    """Events among the server processes of one machine: each binds a Unix datagram socket in
    a shared folder, delivers its own events here and sends them to every other socket."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        folder.mkdir(mode=0o700, exist_ok=True)
        found = folder.stat()
        if found.st_uid != os.getuid() or found.st_mode & 0o077:
            raise PermissionError(
                f"{folder} must belong to this user with mode 700 (another user could send "
                "events to the server processes); remove it and start again"
            )
        self._folder = folder
        self._path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self._path))
        self._sock.setblocking(False)
        self._loop.add_handler(self._sock.fileno(), self._receive, IOLoop.READ)
        self._peers: list[str] = []
        self._rescan()
        for peer in self._peers:
            self._send(peer, JOINED, "joined")  # they rescan too, and send to this one from now

    def _rescan(self) -> None:
        """The other processes' sockets, as the folder holds them now."""
        self._peers = [str(p) for p in self._folder.glob("*.sock") if p != self._path]

    def publish(self, event: Event) -> None:
        """Deliver here, and send to every other process."""
        super().publish(event)
        payload = _trimmed(event, DATAGRAM_LIMIT)
        for peer in list(self._peers):
            self._send(peer, payload, event.type)

    def _send(self, peer: str, payload: bytes, kind: str) -> None:
        """One datagram to one process; a socket nobody listens on any more is removed."""
        try:
            self._sock.sendto(payload, peer)
        except (ConnectionRefusedError, FileNotFoundError):
            Path(peer).unlink(missing_ok=True)
            self._peers = [p for p in self._peers if p != peer]
        except OSError as exc:  # its queue is full: that process is stuck
            log.warning("event %s not sent to %s: %s", kind, Path(peer).name, exc)

    def _receive(self, fd: int, events: int) -> None:
        """Deliver every datagram waiting (an empty one: a process joined)."""
        while True:
            try:
                payload = self._sock.recv(DATAGRAM_LIMIT + 1024)
            except BlockingIOError:
                return
            if payload == JOINED:
                self._rescan()
            else:
                self._deliver(Event.from_json(payload.decode()))

    def close(self) -> None:
        """Stop receiving and remove this process's socket."""
        self._loop.remove_handler(self._sock.fileno())
        self._sock.close()
        self._path.unlink(missing_ok=True)
        super().close()
