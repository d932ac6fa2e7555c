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
from collections import deque
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
JOINED = b""  # what a starting process sends to the others
SEPARATOR = b"\n"  # between the events of one datagram (their JSON has no newline)
QUEUE_LIMIT = 64 * 2**20  # bytes waiting for one process, past which it is taken for stuck
RECEIVE_BATCH = 256  # datagrams taken at once before their events are delivered
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


class _Peer:
    """Another server process: a datagram socket connected to its own (so the IOLoop can tell
    when its queue has room), and the datagrams waiting for that room."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.waiting: deque[bytearray] = deque()
        self.waiting_bytes = 0
        self.dropped = 0  # events not kept while too much waited

    def queue(self, payload: bytes) -> None:
        """Keep a datagram's payload for later, joined to the last one while they fit in one
        datagram (a receiver's queue holds few datagrams: fewer, fuller ones drain faster)."""
        last = self.waiting[-1] if self.waiting else None
        if last is not None and len(last) + 1 + len(payload) <= DATAGRAM_LIMIT:
            last += SEPARATOR + payload
            self.waiting_bytes += 1 + len(payload)
        else:
            self.waiting.append(bytearray(payload))
            self.waiting_bytes += len(payload)


class SocketEventBus(EventBus):
    """Events among the server processes of one machine: each binds a Unix datagram socket in
    a shared folder, delivers its own events here and sends them to every other socket. A
    datagram that a full receiver cannot take now waits, in order, until it can."""

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
        self._path.chmod(0o600)  # as the server's umask makes it: its user's alone
        self._sock.setblocking(False)
        self._loop.add_handler(self._sock.fileno(), self._receive, IOLoop.READ)
        self._peers: dict[str, _Peer] = {}
        self._rescan()
        for peer in list(self._peers.values()):
            self._send(peer, JOINED)  # they rescan too, and send to this one from now

    def _rescan(self) -> None:
        """Connect to the other processes' sockets as the folder holds them now; a socket
        nobody listens on any more (its process is gone) is removed."""
        found = {str(p) for p in self._folder.glob("*.sock") if p != self._path}
        for path in set(self._peers) - found:
            self._forget(self._peers[path])
        for path in found - set(self._peers):
            try:
                self._peers[path] = _Peer(path)
            except (ConnectionRefusedError, FileNotFoundError):
                Path(path).unlink(missing_ok=True)

    def publish(self, event: Event) -> None:
        """Deliver here, and send to every other process (from the IOLoop, in order)."""
        super().publish(event)
        self._loop.add_callback(self._send_all, _trimmed(event, DATAGRAM_LIMIT))

    def _send_all(self, payload: bytes) -> None:
        """One event to every other process."""
        for peer in list(self._peers.values()):
            self._send(peer, payload)

    def _send(self, peer: _Peer, payload: bytes) -> None:
        """One payload to one process: now, or once its queue has room."""
        if peer.waiting:  # behind what already waits, to keep the order
            self._queue(peer, payload)
            return
        try:
            peer.sock.send(payload)
        except BlockingIOError:  # its queue is full: wait until the socket is writable
            self._queue(peer, payload)
            self._loop.add_handler(peer.sock.fileno(), lambda *_: self._flush(peer), IOLoop.WRITE)
        except (ConnectionRefusedError, FileNotFoundError):
            self._forget(peer, unlink=True)

    def _queue(self, peer: _Peer, payload: bytes) -> None:
        """Keep a payload for a process, up to QUEUE_LIMIT bytes (past that it is stuck)."""
        if peer.waiting_bytes + len(payload) > QUEUE_LIMIT:
            peer.dropped += 1
            if peer.dropped == 1:  # once; the count is logged when it takes events again
                log.warning(
                    "events not sent to %s: %d bytes already wait for it (is it stuck?)",
                    Path(peer.path).name,
                    peer.waiting_bytes,
                )
            return
        peer.queue(payload)

    def _flush(self, peer: _Peer) -> None:
        """Send what waits for a process while its queue has room."""
        while peer.waiting:
            try:
                peer.sock.send(peer.waiting[0])
            except BlockingIOError:
                return
            except (ConnectionRefusedError, FileNotFoundError):
                self._forget(peer, unlink=True)
                return
            peer.waiting_bytes -= len(peer.waiting.popleft())
        self._loop.remove_handler(peer.sock.fileno())
        if peer.dropped:
            log.warning("%d events were not sent to %s", peer.dropped, Path(peer.path).name)
            peer.dropped = 0

    def _forget(self, peer: _Peer, *, unlink: bool = False) -> None:
        """Stop sending to a process (and remove its socket file when it is gone)."""
        self._peers.pop(peer.path, None)
        if peer.waiting:
            self._loop.remove_handler(peer.sock.fileno())
        peer.sock.close()
        if unlink:
            Path(peer.path).unlink(missing_ok=True)

    def _receive(self, fd: int, events: int) -> None:
        """Take the datagrams waiting (up to a batch), then deliver their events: the queue is
        emptied first, so senders wait as little as possible; an empty payload says that a
        process joined."""
        payloads = []
        for _ in range(RECEIVE_BATCH):
            try:
                payloads.append(self._sock.recv(DATAGRAM_LIMIT + 1024))
            except BlockingIOError:
                break
        for payload in payloads:
            for line in payload.split(SEPARATOR):
                if line == JOINED:
                    self._rescan()
                else:
                    self._deliver(Event.from_json(line.decode()))

    def close(self) -> None:
        """Stop receiving and sending, and remove this process's socket."""
        self._loop.remove_handler(self._sock.fileno())
        self._sock.close()
        for peer in list(self._peers.values()):
            self._forget(peer)
        self._path.unlink(missing_ok=True)
        super().close()
