"""What an operator watches and how a server stops: requests in flight and open WebSockets
(for the drain on SIGTERM), readiness checks, and Prometheus metrics.

Metrics with `--processes N`: prometheus_client's multiprocess mode. The supervising process
makes a private folder and names it in PROMETHEUS_MULTIPROC_DIR before it forks; each serving
process writes its counters there, and a scrape answered by any of them reads the whole
folder, so one scrape shows the whole server (counters and histograms summed, gauges summed
over live processes). prometheus_client picks its storage when it is imported, so this module
imports it only once the server has decided (see `Metrics`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from tornado import httputil, web

log = logging.getLogger("crowdsource.server")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
GOING_AWAY = 1001  # the WebSocket close code for a server that is stopping
SCORING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """This process's Prometheus metrics."""

    def __init__(self) -> None:
        # Imported here, not at the top: prometheus_client chooses between in-process and
        # multiprocess storage when it is first imported, after the server set the folder.
        import prometheus_client as prom

        self._prom = prom
        prom.disable_created_metrics()  # the _created samples only double the text
        self.shared = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = prom.CollectorRegistry(auto_describe=True)
        own = None if self.shared else self.registry  # shared: collected from the folder
        self.requests = prom.Counter(
            "crowdsource_http_requests",
            "HTTP requests answered, by method, route pattern and status.",
            ["method", "route", "status"],
            registry=own,
        )
        self.submissions = prom.Counter(
            "crowdsource_submissions",
            "Submissions whose scoring ended, by outcome (scored or failed).",
            ["outcome"],
            registry=own,
        )
        self.scoring_seconds = prom.Histogram(
            "crowdsource_scoring_seconds",
            "Time to score one submission (or re-score one), wherever it ran.",
            buckets=SCORING_BUCKETS,
            registry=own,
        )
        self.scoring_pending = self._gauge(
            "crowdsource_scoring_jobs_pending", "Scoring jobs started and not yet finished.", own
        )
        self.in_flight = self._gauge(
            "crowdsource_http_requests_in_flight", "HTTP requests being answered.", own
        )
        self.websockets = self._gauge(
            "crowdsource_websocket_listeners", "Open event-stream WebSockets.", own
        )
        self.websocket_queue_peak = self._prom.Gauge(
            "crowdsource_websocket_queue_peak_bytes",
            "Most bytes one event-stream WebSocket had waiting to be sent (bounded by "
            "--LeaderboardManager.send_queue_kb: past it the listener is closed).",
            registry=own,
            multiprocess_mode="livemax",
        )
        self.pool_checked_out = self._gauge(
            "crowdsource_db_pool_checked_out", "Database connections in use.", own
        )
        self.pool_size = self._gauge(
            "crowdsource_db_pool_size",
            "Database connections the pools keep (--db-pool-size per process).",
            own,
        )
        self.pool_overflow = self._gauge(
            "crowdsource_db_pool_overflow", "Connections opened above the pool size.", own
        )

    def _gauge(self, name: str, doc: str, registry: Any) -> Any:
        """A gauge summed over the live processes."""
        return self._prom.Gauge(name, doc, registry=registry, multiprocess_mode="livesum")

    def scrape(self) -> tuple[bytes, str]:
        """The exposition text of every process of this server, and its content type."""
        registry = self.registry
        if self.shared:
            from prometheus_client import multiprocess

            registry = self._prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return self._prom.generate_latest(registry), self._prom.CONTENT_TYPE_LATEST

    @contextlib.contextmanager
    def scoring(self) -> Iterator[None]:
        """Count a scoring job as pending while it runs, and time it."""
        self.scoring_pending.inc()
        started = time.perf_counter()
        try:
            yield
        finally:
            self.scoring_pending.dec()
            self.scoring_seconds.observe(time.perf_counter() - started)

    def sample_pool(self, pool: Any) -> None:
        """Set the pool gauges from a SQLAlchemy QueuePool (other pools report nothing)."""
        if hasattr(pool, "checkedout") and hasattr(pool, "size"):
            self.pool_checked_out.set(pool.checkedout())
            self.pool_size.set(pool.size())
            self.pool_overflow.set(max(0, pool.overflow()))


_metrics: Metrics | None = None


def metrics() -> Metrics:
    """This process's metrics, made on first use."""
    global _metrics
    if _metrics is None:
        _metrics = Metrics()
    return _metrics


def share_metrics() -> str:
    """Before forking `--processes`: a private folder for every process's metrics, named in
    the environment; returns it (remove it with `unshare_metrics`)."""
    folder = tempfile.mkdtemp(prefix="crowdsource-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    return folder


def unshare_metrics(folder: str) -> None:
    """Remove the metrics folder once every serving process has ended."""
    shutil.rmtree(folder, ignore_errors=True)
    os.environ.pop(MULTIPROC_ENV, None)


def forget_process(pid: int) -> None:
    """A serving process ended: its gauges no longer count (its counters still do)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def route_label(pattern: str) -> str:
    """A route's regular expression as a metric label: `/api/v1/competitions/{}`."""
    return re.sub(r"\([^)]*\)", "{}", pattern).rstrip("$")


class Traffic:
    """One process's requests in flight and open WebSockets; the drain waits on them."""

    def __init__(self) -> None:
        self.in_flight: set[object] = set()  # the request connections being answered
        self.websockets: set[Any] = set()
        self.draining = False
        self._idle: asyncio.Event | None = None

    def started(self, request: httputil.HTTPConnection) -> None:
        """A request's headers arrived."""
        self.in_flight.add(request)
        metrics().in_flight.set(len(self.in_flight))

    def ended(self, request: object) -> None:
        """A request was answered, or its connection closed."""
        if request in self.in_flight:
            self.in_flight.discard(request)
            metrics().in_flight.set(len(self.in_flight))
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    async def quiet(self, timeout: float) -> bool:
        """Wait until no request is in flight, at most `timeout` seconds; True if none is."""
        if self.in_flight:
            self._idle = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        return not self.in_flight

    def opened(self, socket: Any) -> None:
        """A WebSocket opened."""
        self.websockets.add(socket)
        metrics().websockets.set(len(self.websockets))

    def closed(self, socket: Any) -> None:
        """A WebSocket closed."""
        self.websockets.discard(socket)
        metrics().websockets.set(len(self.websockets))

    async def close_websockets(self, reason: str, timeout: float) -> None:
        """Close every WebSocket with 1001 (going away) and `reason`, and wait briefly for
        the clients' close frames, so that each sees a clean close."""
        for socket in list(self.websockets):
            socket.close(GOING_AWAY, reason)
        deadline = time.monotonic() + timeout
        while self.websockets and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # each handler's on_close takes it out


class _Tracked(httputil.HTTPMessageDelegate):
    """A request's delegate that tells `Traffic` when it starts and ends."""

    def __init__(self, inner: httputil.HTTPMessageDelegate, request: Any, traffic: Traffic) -> None:
        self.inner = inner
        self.request = request
        self.traffic = traffic

    def headers_received(self, start_line: Any, headers: httputil.HTTPHeaders) -> Any:
        """Count the request from here (an idle keep-alive connection is not in flight)."""
        self.traffic.started(self.request)
        return self.inner.headers_received(start_line, headers)

    def data_received(self, chunk: bytes) -> Any:
        """Pass the body on."""
        return self.inner.data_received(chunk)

    def finish(self) -> None:
        """The body is in (the answer may come later)."""
        self.inner.finish()

    def on_connection_close(self) -> None:
        """The client left: nobody waits for this answer any more."""
        self.traffic.ended(self.request)
        self.inner.on_connection_close()


class ServingApplication(web.Application):
    """Tornado's Application that counts requests for the drain and the metrics."""

    def __init__(self, handlers: list[Any], **settings: Any) -> None:
        super().__init__(handlers, **settings)
        self.traffic: Traffic = settings["traffic"]
        self._routes = {rule[1]: route_label(rule[0]) for rule in reversed(handlers)}

    def start_request(
        self, server_conn: object, request_conn: httputil.HTTPConnection
    ) -> httputil.HTTPMessageDelegate:
        """Track each request on its connection."""
        inner = super().start_request(server_conn, request_conn)
        return _Tracked(inner, request_conn, self.traffic)

    def log_request(self, handler: web.RequestHandler) -> None:
        """Log and count an answered request; it is no longer in flight."""
        super().log_request(handler)
        route = self._routes.get(type(handler), "other")
        status = str(handler.get_status())
        metrics().requests.labels(handler.request.method or "", route, status).inc()
        self.traffic.ended(handler.request.connection)


async def check(
    name: str, probe: Callable[[], Awaitable[str | None]], timeout: float
) -> str | None:
    """What is wrong according to one readiness probe, or None; a probe that takes longer
    than `timeout` or raises is a problem too."""
    try:
        return await asyncio.wait_for(probe(), timeout)
    except asyncio.TimeoutError:
        return f"{name} did not answer within {timeout:g} s"
    except Exception as exc:  # a readiness probe reports, never fails the request
        first = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
        return f"{name}: {type(exc).__name__}: {first}"


class Readiness:
    """Whether this process can serve: database reachable with the newest schema, event bus
    up, scoring backend up, and not stopping. Each probe is bounded in time."""

    def __init__(self, *, store: Any, bus: Any, workers: Any, traffic: Traffic) -> None:
        self.store = store
        self.bus = bus
        self.workers = workers
        self.traffic = traffic

    async def problems(self, timeout: float = 5.0) -> dict[str, str]:
        """What is not ready, by part (empty: ready)."""
        database, events, scoring = await asyncio.gather(  # at once: the answer within timeout
            check("database", self._database, timeout),
            check("event bus", self._bus, timeout),
            check("scoring backend", self._scoring, timeout),
        )
        found = {
            "server": "stopping: finishing requests in flight" if self.traffic.draining else None,
            "database": database,
            "events": events,
            "scoring": scoring,
        }
        return {part: problem for part, problem in found.items() if problem}

    async def _database(self) -> str | None:
        """Reachable, at the schema revision this server was built for. On the loop's own
        threads, not the store's: a busy store must not make the check queue behind writes."""
        from crowdsource.server.storage.engine import current_revision, head_revision

        def revision() -> str | None:
            with self.store.engine.connect() as conn:
                return current_revision(conn)

        current = await asyncio.get_running_loop().run_in_executor(None, revision)
        if current != head_revision():
            return (
                f"the schema is at revision {current}, this server needs {head_revision()}: "
                "run `crowdsource db upgrade`"
            )
        return None

    async def _bus(self) -> str | None:
        """The event bus's own account."""
        return self.bus.problem()

    async def _scoring(self) -> str | None:
        """The scoring backend's own account."""
        return self.workers.problem()
