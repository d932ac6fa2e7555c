"""Events: published after each commit, fanned out to subscribers in this process and to
every other server process: through LISTEN/NOTIFY on PostgreSQL, through Unix datagram
sockets among the processes of one machine (`--processes` on a SQLite file)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import random
import socket
import tempfile
import threading
import uuid
from collections import Counter, deque
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
RESYNC = "hello"  # delivered here when events may have been missed: listeners resync on it
TOKEN_ROTATED = "participant.token_rotated"  # between server processes (caches), never streamed
ENTRY = "leaderboard.entry"  # an entry's recorded state, for every process's live boards
INTERNAL = frozenset({TOKEN_ROTATED, ENTRY})
TYPES = (
    "competition.created",
    "competition.closed",
    "competition.resolved",
    "competition.updated",
    "competition.deleted",
    "submission.scored",
    "submission.failed",
    "leaderboard.changed",
    "leaderboard.snapshot",
    "leaderboard.delta",
    "leaderboard.you",
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

    def problem(self) -> str | None:
        """What keeps events from flowing now, for the readiness check (None: nothing)."""
        return None

    def close(self) -> None:
        """Stop delivering."""
        self._subscribers.clear()


class PostgresEventBus(EventBus):
    """Publishes with NOTIFY; a listener thread per process delivers what other processes
    sent (this one's own events are delivered here at once).

    Both connections outlive the database's restarts: publishing only queues the event (so
    a request that committed never fails on its event), a sender thread sends the queue,
    and each thread reconnects with backoff when its connection is lost. Events sent while
    this process was not listening are lost to it: once it listens again, its subscribers
    get a RESYNC event instead."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._stop = threading.Event()
        self._outbox: deque[str] = deque(maxlen=OUTBOX_LIMIT)
        self._own: Counter[str] = Counter()  # sent from here: delivered already, skipped
        self._ready = threading.Condition()
        self._listen: Any = _listening(dsn)  # before serving: events from the start are heard
        self._threads = [
            threading.Thread(target=self._run, name="crowdsource-listen", daemon=True),
            threading.Thread(target=self._send_all, name="crowdsource-notify", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def publish(self, event: Event) -> None:
        """Deliver here at once (a process reads its own writes), and queue a NOTIFY to
        every other process (large data is left for each to load); never blocks nor fails."""
        payload = _trimmed(event, NOTIFY_LIMIT).decode()
        with self._ready:
            if len(self._outbox) == self._outbox.maxlen:
                log.warning("%d events wait for the database; dropping the oldest", OUTBOX_LIMIT)
            self._outbox.append(payload)
            if len(self._own) > 2 * OUTBOX_LIMIT:  # some never came back (dropped): forget
                self._own.clear()
            self._own[payload] += 1
            self._ready.notify()
        super().publish(event)

    def problem(self) -> str | None:
        """Not listening: events from other servers are not heard until it listens again."""
        if self._listen is None or not self._threads[0].is_alive():
            return "the event listener is not connected to PostgreSQL (reconnecting)"
        return None

    def _send_all(self) -> None:
        """Send queued events, reconnecting with backoff while the database is away."""
        import psycopg

        conn: Any = None
        wait = Backoff()
        while True:
            with self._ready:
                while not self._outbox and not self._stop.is_set():
                    self._ready.wait()
                if not self._outbox:
                    break
                batch = list(itertools.islice(self._outbox, NOTIFY_BATCH))
            try:
                conn = conn if conn is not None and not conn.closed else _connect(self._dsn)
                conn.execute(NOTIFY, (CHANNEL, batch))
            except psycopg.Error as exc:
                _discard(conn)
                conn = None
                if self._stop.is_set():
                    break
                log.warning("cannot send events (%s); trying again", _first_line(exc))
                self._stop.wait(wait.next())
                continue
            wait.reset()
            with self._ready:  # those sent, unless dropped meanwhile (a full outbox)
                for payload in batch:
                    if self._outbox and self._outbox[0] is payload:
                        self._outbox.popleft()
        _discard(conn)

    def _run(self) -> None:
        """Receive notifications and hand them to the IOLoop; listen again after a loss."""
        import psycopg

        wait = Backoff()
        while not self._stop.is_set():
            try:
                if self._listen is None:
                    self._listen = _listening(self._dsn)
                    log.info("listening for events again")
                    wait.reset()
                    super().publish(Event(RESYNC, 0))  # those sent meanwhile were missed
                for note in self._listen.notifies(timeout=1.0):
                    self._receive(note.payload)
            except psycopg.Error as exc:
                _discard(self._listen)
                self._listen = None
                if self._stop.is_set():
                    return
                log.warning("event listener lost the database (%s); reconnecting", _first_line(exc))
                self._stop.wait(wait.next())
            except Exception:  # keep listening, whatever failed
                log.exception("event listener failed; going on")
                self._stop.wait(1.0)

    def _receive(self, payload: str) -> None:
        """Hand one notification to the IOLoop (one that is not an event, or that this
        process sent and delivered already, is skipped)."""
        with self._ready:
            if self._own[payload]:
                self._own[payload] -= 1
                if not self._own[payload]:
                    del self._own[payload]
                return
        try:
            event = Event.from_json(payload)
        except (ValueError, TypeError) as exc:
            log.warning("skipped a notification that is not an event: %s", exc)
            return
        super().publish(event)

    def close(self) -> None:
        """Send what is queued (briefly), stop both threads and close their connections."""
        with self._ready:
            self._stop.set()
            self._ready.notify()
        for thread in self._threads:
            thread.join(timeout=3)
        super().close()
        _discard(self._listen)


OUTBOX_LIMIT = 10_000  # events kept for sending while the database is away
NOTIFY_BATCH = 500  # events sent in one transaction: one commit for what waited meanwhile
# In the array's order; PostgreSQL delivers a transaction's notifications in the order sent.
NOTIFY = "SELECT count(pg_notify(%s, e.payload)) FROM unnest(%s::text[]) AS e(payload)"


class Backoff:
    """Waits that double from 0.1 s to 5 s, with jitter, so many servers do not reconnect
    in step."""

    def __init__(self, first: float = 0.1, most: float = 5.0) -> None:
        self._first, self._most, self._next = first, most, first

    def next(self) -> float:
        """The wait before the next attempt."""
        wait = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self._most)
        return wait

    def reset(self) -> None:
        """An attempt succeeded: start from the shortest wait again."""
        self._next = self._first


def _connect(dsn: str) -> Any:
    """An autocommit connection that gives up connecting after a few seconds and notices a
    vanished server through TCP keepalives."""
    import psycopg

    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=5,
        keepalives=1,
        keepalives_idle=10,
        keepalives_interval=5,
        keepalives_count=3,
    )


def _listening(dsn: str) -> Any:
    """A new connection listening on the events channel."""
    conn = _connect(dsn)
    conn.execute(f"LISTEN {CHANNEL}")
    return conn


def _discard(conn: Any) -> None:
    """Close a connection that may be broken already."""
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _first_line(exc: BaseException) -> str:
    """An error's first line, for a one-line log."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


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
