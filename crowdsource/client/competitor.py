"""Automatic competing: run functions on every open competition of a type, submit what they return.

One `Follower` (crowdsource.client.live) follows the server's event stream, reconnecting with
backoff; after every `hello` the competitor resyncs by REST. Each function has its own worker
thread and queue (newest competition first), so a function that hangs holds up only itself.
Every run is recorded as a `RunResult`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from crowdsource.client.errors import (
    ConnectionFailed,
    CrowdsourceError,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
)
from crowdsource.client.live import Follower, start_thread
from crowdsource.client.models import Competition, Event, Submission

if TYPE_CHECKING:
    from crowdsource.client.client import Client

__all__ = ["Competitor", "RunResult", "idempotency_key"]

log = logging.getLogger("crowdsource.client.competitor")

T = TypeVar("T")
CompeteFn = Callable[[Competition], "pd.DataFrame | None"]
RETRYABLE = (ConnectionFailed, ServerError, RateLimited, Timeout)
NOT_SUBMITTED = "not submitted"  # the state of a run whose frame failed the pre-flight check
_SEQUENCE = itertools.count()


def idempotency_key(competition_id: int, function: str, fingerprint: str = "") -> str:
    """The submission key for one function on one competition: a retry never duplicates,
    while a changed function (another `fingerprint`) submits afresh."""
    return f"compete:{competition_id}:{function}" + (f":{fingerprint}" if fingerprint else "")


def fingerprint(fn: Callable[..., Any]) -> str:
    """A short digest of a function's code, so that an edited function counts as new."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return ""
    return hashlib.sha256(code.co_code + repr(code.co_consts).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RunResult:
    """What happened when one function ran on one competition."""

    competition_id: int
    function: str
    ok: bool
    score: float | None = None
    rank: int | None = None
    state: str | None = None
    submission_id: int | None = None
    error: str | None = None
    seconds: float = 0.0
    submission: Submission | None = field(default=None, repr=False, compare=False)


@dataclass(eq=False)
class _Registration:
    """One function competing in one competition type, with its own queue and worker."""

    type: str
    fn: CompeteFn
    name: str
    share_source: bool = False  # its source goes with its submissions (client/provenance.py)
    inbox: queue.PriorityQueue[tuple[float, int, Competition | None]] = field(
        default_factory=queue.PriorityQueue
    )

    def put(self, competition: Competition) -> None:
        """Queue a competition; the newest (highest id) runs first."""
        self.inbox.put((-competition.id, next(_SEQUENCE), competition))

    def put_stop(self) -> None:
        """Queue the stop sentinel ahead of everything."""
        self.inbox.put((float("-inf"), next(_SEQUENCE), None))

    thread: threading.Thread | None = None


class Competitor:
    """Runs registered functions once per open competition of their type, and submits."""

    def __init__(
        self,
        client: Client,
        *,
        on_result: Callable[[RunResult], None] | None = None,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        retry_for: float = 120.0,
        share_source: bool = False,
    ) -> None:
        self.client = client
        self.share_source = share_source  # the default of each function added
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.retry_for = retry_for
        self._registrations: list[_Registration] = []
        self._seen: set[tuple[int, str]] = set()
        self._scheduled: set[int] = set()
        self._results: list[RunResult] = []
        self._callbacks: list[Callable[[RunResult], None]] = [on_result] if on_result else []
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._started = False
        self.follower = Follower(
            client, handle=self._handle, min_backoff=min_backoff, max_backoff=max_backoff
        )

    def __repr__(self) -> str:
        names = ", ".join(f"{r.type}:{r.name}" for r in self._registrations)
        state = "stopped" if self.stopped else "running" if self.running else "idle"
        return f"<Competitor {state} [{names}] {len(self._results)} results>"

    # -- public ---------------------------------------------------------------------------

    def add(
        self, type: str, fn: CompeteFn, *, name: str | None = None, share_source: bool | None = None
    ) -> Competitor:
        """Register `fn` for competitions of `type` (also while running); with `share_source`
        (default: the Competitor's) its submissions record its source."""
        name = name or _function_name(fn)
        shared = self.share_source if share_source is None else share_source
        with self._lock:
            if any(r.name == name and r.type == type for r in self._registrations):
                raise ValueError(f"a function named {name!r} already competes in {type!r}")
            registration = _Registration(type, fn, name, shared)
            self._registrations.append(registration)
            running = self.running
        if running:
            self._start_worker(registration)
            self._resync_quietly([type])
        return self

    def start(self) -> Competitor:
        """Start the listener and the workers (idempotent)."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("this Competitor was stopped; make a new one")
            if self._started:
                return self
            if not self.client.token:
                raise Unauthorized(
                    "competing needs a participant: call client.register() first,"
                    " or pass token= / set CROWDSOURCE_TOKEN"
                )
            self._started = True
            self.follower.start()
            registrations = list(self._registrations)
        for registration in registrations:
            self._start_worker(registration)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening and working; a function still running is left to finish alone."""
        self._stop.set()
        with self._lock:
            registrations = list(self._registrations)
            self._changed.notify_all()
        for registration in registrations:
            registration.put_stop()
        deadline = time.monotonic() + timeout
        self.follower.stop(timeout)
        for thread in (r.thread for r in registrations):
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._started and not self._stop.is_set()

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    @property
    def connected(self) -> bool:
        """True while the event stream is connected."""
        return self.follower.connected

    @property
    def connections(self) -> int:
        """How many times the event stream has connected."""
        return self.follower.connections

    @property
    def results(self) -> list[RunResult]:
        """Every run so far, in the order they finished."""
        with self._lock:
            return list(self._results)

    def on_result(self, callback: Callable[[RunResult], None], remove: bool = False) -> None:
        """Call `callback(result)` after every run (from a worker thread); or remove it."""
        with self._lock:
            if remove:
                self._callbacks = [c for c in self._callbacks if c != callback]
            else:
                self._callbacks.append(callback)

    def wait(
        self, count: int, timeout: float | None = None, *, competition_id: int | None = None
    ) -> bool:
        """Block until there are `count` results (for one competition if given); False if not."""

        def enough() -> bool:
            found = [r for r in self._results if competition_id in (None, r.competition_id)]
            return len(found) >= count

        with self._changed:
            self._changed.wait_for(lambda: enough() or self._stop.is_set(), timeout)
            return enough()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the event stream is connected; False on timeout."""
        return self.follower.wait_connected(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Block until stop() (from another thread or a signal handler); True if stopped."""
        return self._stop.wait(timeout)

    def __enter__(self) -> Competitor:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- listening ----------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        """React to one event: resync after hello, offer new competitions."""
        if event.type == "hello":
            self._resync(sorted({r.type for r in self._registrations}))
        elif event.type == "competition.created" and event.data:
            self._offer(event.data)

    def _resync(self, types: list[str]) -> None:
        """Offer every open (and schedule every upcoming) competition of these types."""
        for kind in types:
            for competition in self.client.competitions(type=kind, status="open"):
                self._offer(competition.raw)
            for competition in self._upcoming(kind):
                self._offer(competition.raw)

    def _upcoming(self, kind: str) -> list[Competition]:
        """Upcoming competitions of a type, if the server can filter by that status."""
        try:
            return self.client.competitions(type=kind, status="upcoming")
        except CrowdsourceError as exc:
            if isinstance(exc, RETRYABLE):
                raise
            return []

    def _resync_quietly(self, types: list[str]) -> None:
        """Resync now if the server answers; otherwise the next (re)connect will."""
        try:
            self._resync(types)
        except CrowdsourceError as exc:
            log.debug("resync deferred: %s", exc)

    def _offer(self, data: dict[str, Any]) -> None:
        """Queue a competition once per matching function (or wait for it to open)."""
        competition = Competition.from_json(data, self.client)
        self.client._id_columns[competition.id] = competition.id_column
        if competition.status == "upcoming":
            self._schedule(competition)
            return
        if competition.status != "open":
            return
        for registration in self._matching(competition.type):
            key = (competition.id, registration.name)
            with self._lock:
                if key in self._seen:
                    continue
                self._seen.add(key)
            registration.put(competition)

    def _matching(self, kind: str) -> list[_Registration]:
        """The registrations for one competition type."""
        with self._lock:
            return [r for r in self._registrations if r.type == kind]

    def _schedule(self, competition: Competition) -> None:
        """Offer an upcoming competition again when it opens."""
        if not self._matching(competition.type):
            return
        with self._lock:
            if competition.id in self._scheduled:
                return
            self._scheduled.add(competition.id)
        delay = _seconds_until(competition.opens_at)
        start_thread(self._open_later, competition.id, delay, name="crowdsource-opens")

    def _open_later(self, competition_id: int, delay: float) -> None:
        """Sleep until a competition opens (or stop), then offer it."""
        if self._stop.wait(delay + 0.05):
            return
        with self._lock:
            self._scheduled.discard(competition_id)
        try:
            fresh = self._retrying(lambda: self.client.competition(competition_id))
        except CrowdsourceError as exc:
            log.warning("competition %s: could not fetch it once open: %s", competition_id, exc)
            return
        self._offer(fresh.raw)

    # -- working ------------------------------------------------------------------------------

    def _start_worker(self, registration: _Registration) -> None:
        """Start the worker thread of one registration."""
        registration.thread = start_thread(
            self._work, registration, name=f"crowdsource-{registration.name}"
        )

    def _work(self, registration: _Registration) -> None:
        """Run one function on each competition queued for it, until stopped."""
        while True:
            *_, competition = registration.inbox.get()
            if competition is None or self._stop.is_set():
                return
            self._record(self._run(registration, competition))

    def _run(self, registration: _Registration, competition: Competition) -> RunResult:
        """Fetch the data, call the function, submit its frame; describe the outcome."""
        started = time.monotonic()

        def failed(error: str) -> RunResult:
            log.warning("competition %s: %s failed: %s", competition.id, registration.name, error)
            seconds = time.monotonic() - started
            return RunResult(competition.id, registration.name, False, error=error, seconds=seconds)

        try:
            self._retrying(lambda: competition.dataset)
        except CrowdsourceError as exc:
            return failed(f"could not download the dataset: {exc}")
        try:
            predictions = registration.fn(competition)
        except Exception as exc:
            return failed(f"{type(exc).__name__}: {exc}")
        if predictions is None:
            return failed("the function returned None instead of a DataFrame")
        try:  # the server's own checks, here: a frame that cannot fit is never sent
            competition.check(predictions)
        except CrowdsourceError as exc:
            result = failed(f"{type(exc).__name__} (found before submitting): {exc}")
            return replace(result, state=NOT_SUBMITTED)
        except Exception:  # a fault of the check itself: the server will judge the frame
            log.exception("competition %s: the pre-flight check failed", competition.id)
        key = idempotency_key(competition.id, registration.name, fingerprint(registration.fn))
        origin = _provenance(registration)
        try:
            submission = self._retrying(
                lambda: self.client.submit(
                    competition.id, predictions, idempotency_key=key, provenance=origin
                )
            )
        except CrowdsourceError as exc:
            return failed(f"{type(exc).__name__}: {exc}")
        return self._scored(registration, submission, time.monotonic() - started)

    def _scored(self, registration: _Registration, sub: Submission, seconds: float) -> RunResult:
        """The result of a submission the server accepted."""
        ok = sub.state != "failed"
        if ok:
            log.info(
                "competition %s: %s scored %s (rank %s)",
                sub.competition_id,
                registration.name,
                sub.public_score,
                sub.rank,
            )
        else:
            log.warning(
                "competition %s: %s failed: %s", sub.competition_id, registration.name, sub.reason
            )
        return RunResult(
            sub.competition_id,
            registration.name,
            ok,
            score=sub.public_score,
            rank=sub.rank,
            state=sub.state,
            submission_id=sub.id,
            error=None if ok else sub.reason,
            seconds=seconds,
            submission=sub,
        )

    def _retrying(self, call: Callable[[], T]) -> T:
        """Call, retrying network and server failures with backoff for up to `retry_for` s."""
        deadline = time.monotonic() + self.retry_for
        delay = self.min_backoff
        while True:
            try:
                return call()
            except RETRYABLE as exc:
                if time.monotonic() + delay > deadline or self._stop.is_set():
                    raise
                log.debug("retrying in %.2f s: %s", delay, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.max_backoff)

    def _record(self, result: RunResult) -> None:
        """Keep a result, wake waiters, call the callbacks."""
        with self._changed:
            self._results.append(result)
            self._changed.notify_all()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(result)
            except Exception:
                log.exception("on_result callback failed")


def _provenance(registration: _Registration) -> dict[str, Any] | None:
    """Where a run's submission came from (client/provenance.py); None if that fails."""
    from crowdsource.client.provenance import collect

    fn, name, shared = registration.fn, registration.name, registration.share_source
    try:
        return collect(fn, name=name, share_source=shared)
    except Exception:  # never stop a run for its record
        log.exception("%s: could not record its provenance", registration.name)
        return None


def _function_name(fn: Callable[..., Any]) -> str:
    """A readable, stable name for a function: its qualified name without `<locals>`."""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return str(qualname).rsplit("<locals>.", 1)[-1]


def _seconds_until(iso: str | None) -> float:
    """Seconds from now until an ISO time (0 if unknown or past)."""
    if not iso:
        return 0.0
    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
