"""The HTTP server's connections: a cap on how many are open, and an accept loop that pauses,
instead of spinning and logging, when the process runs out of file descriptors."""

from __future__ import annotations

import errno
import logging
import resource
import socket
import time
from collections.abc import Iterable
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream

log = logging.getLogger("crowdsource.server")

# Out of descriptors or kernel memory: the pending connection stays queued, so the listening
# socket stays readable and an accept loop that retries at once spins at full CPU.
EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
PAUSE_SECONDS = 0.5  # how long accepting pauses when descriptors run out
LOG_EVERY_SECONDS = 60.0  # at most one warning per this interval about running out
ACCEPT_BATCH = 128  # connections accepted per wake-up, so other work is not starved
FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: application/json; charset=utf-8\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
)
FULL_BODY = (
    b'{"error": "unavailable", "message": "the server has too many open connections; '
    b'try again in a moment", "status": 503}'
)


def default_max_connections() -> int:
    """Half the process's open-file limit: each connection may also hold a spooled body, and
    the database, logs and scoring pool need theirs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 10_000
    return max(8, soft // 2)


class _Stream(IOStream):
    """A connection's stream that counts itself open until its socket is closed (WebSocket
    connections too, which HTTPServer stops tracking once upgraded)."""

    def __init__(self, sock: socket.socket, server: GuardedHTTPServer, **kwargs: Any) -> None:
        super().__init__(sock, **kwargs)
        self._server = server
        server.open_connections += 1

    def close_fd(self) -> None:
        """Close the socket and count it closed."""
        try:
            super().close_fd()
        finally:
            self._server.open_connections -= 1


class Throttled:
    """A warning logged at most once per interval, counting the times it was held back."""

    def __init__(self, every: float = LOG_EVERY_SECONDS) -> None:
        self.every = every
        self.logged_at = float("-inf")
        self.held = 0

    def warn(self, message: str, *args: Any) -> None:
        """Log `message % (*args, times)` if the interval has passed since the last one."""
        self.held += 1
        now = time.monotonic()
        if now - self.logged_at >= self.every:
            log.warning(message, *args, self.held)
            self.logged_at, self.held = now, 0


class GuardedHTTPServer(HTTPServer):
    """Tornado's HTTPServer with a connection cap (503 and close above it) and an accept loop
    that survives EMFILE."""

    max_connections = 1024
    open_connections = 0
    _full = Throttled()

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        """Accept on each socket with our own loop instead of Tornado's."""
        for sock in sockets:
            self._sockets[sock.fileno()] = sock
            self._handlers[sock.fileno()] = _Acceptor(self, sock).stop

    def take(self, connection: socket.socket, address: Any) -> None:
        """Serve one accepted connection, or refuse it with a 503 if at the cap."""
        if self.open_connections >= self.max_connections:
            _refuse(connection)
            self._full.warn(
                "%d connections open, the --max-connections cap: answered 503 %d time(s)",
                self.open_connections,
            )
            return
        stream = _Stream(
            connection,
            self,
            max_buffer_size=self.max_buffer_size,
            read_chunk_size=self.read_chunk_size,
        )
        self.handle_stream(stream, address)


def _refuse(connection: socket.socket) -> None:
    """Answer 503 with Connection: close and close, without waiting on the client."""
    try:
        connection.setblocking(False)
        connection.send(FULL % (len(FULL_BODY), FULL_BODY))
        connection.shutdown(socket.SHUT_WR)
        connection.recv(65536)  # what the client sent already: unread, closing would reset
    except OSError:
        pass
    finally:
        connection.close()


class _Acceptor:
    """Accepts connections on one listening socket; pauses when descriptors run out."""

    def __init__(self, server: GuardedHTTPServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.loop = IOLoop.current()
        self.listening = False
        self.stopped = False
        self.exhausted = Throttled()
        self._listen()

    def _listen(self) -> None:
        """Wait for connections."""
        if not self.stopped and not self.listening:
            self.loop.add_handler(self.sock, self._ready, IOLoop.READ)
            self.listening = True

    def _pause(self, exc: OSError) -> None:
        """Stop accepting for a moment; warn at most once per interval."""
        self.loop.remove_handler(self.sock)
        self.listening = False
        self.loop.call_later(PAUSE_SECONDS, self._listen)
        self.exhausted.warn(
            "cannot accept connections (%s) with %d open: paused accepting for %.1f s, %d "
            "time(s); raise the open-file limit (ulimit -n) or lower --max-connections",
            errno.errorcode.get(exc.errno or 0, exc),
            self.server.open_connections,
            PAUSE_SECONDS,
        )

    def _ready(self, fd: Any, events: int) -> None:
        """Accept what is waiting, up to a batch."""
        for _ in range(ACCEPT_BATCH):
            if self.stopped:
                return
            try:
                connection, address = self.sock.accept()
            except BlockingIOError:
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                if exc.errno in EXHAUSTED:
                    self._pause(exc)
                    return
                raise
            self.server.take(connection, address)

    def stop(self) -> None:
        """Stop accepting for good (the server is stopping)."""
        self.stopped = True
        if self.listening:
            self.loop.remove_handler(self.sock)
            self.listening = False
