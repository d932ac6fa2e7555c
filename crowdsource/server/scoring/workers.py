"""Where scoring runs: small jobs on a thread, large ones in a process pool or on Dask,
so the server's event loop never waits on a metric; and the jobs themselves, which load the
stored frames (through the blob store) or are handed the prepared answer (on Dask: see
cluster.py), keep prepared answers cached in each process, and contain every fault of scoring.

Every job sent off this process has a time limit (--scoring-timeout): past it, or with the
Dask scheduler away, the job fails with a reason that says so, or runs on the local process
pool instead with --dask-fallback=local.

Containment: scoring refuses what it cannot score with an InvalidSubmission, whatever the
input. A refusal the scorer made keeps its message; any other exception is logged with its
traceback here and the participant is told only that the server logged it. (A failure of
the database itself is not a verdict on the submission: it propagates.) A dead pool worker
costs at most its own job: the pool is rebuilt and the job retried once, else Unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ParamSpec, TypeVar, cast

from crowdsource import frames
from crowdsource.errors import CrowdsourceError, InvalidSubmission, Unavailable
from crowdsource.extras import require
from crowdsource.server.scoring.cluster import Away, DaskScoring
from crowdsource.server.scoring.score import Prepared, Scored, Spec, prepare, score
from crowdsource.server.storage.blobs import BlobStore

log = logging.getLogger(__name__)
T = TypeVar("T")
P = ParamSpec("P")
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
UNSCORABLE = "could not be scored: the server logged the error"
RETRY_AFTER = 2  # seconds: a fresh pool is already starting when a 503 is sent
Source = str | Prepared  # a database URL to load the answer through, or the answer itself


# ---------------------------------------------------------------- containment


def failure(exc: BaseException) -> str:
    """Why a scoring failed, for the participant: a refusal's own message; for anything else
    a generic one, the traceback going to the server's log."""
    if isinstance(exc, CrowdsourceError):
        return exc.message
    log.error("scoring failed", exc_info=exc)
    return UNSCORABLE


def contained(fn: Callable[P, T]) -> Callable[P, T]:
    """A job whose unexpected exceptions become an InvalidSubmission with a generic reason
    (logged here, in whichever process ran it); refusals pass as they are."""

    @functools.wraps(fn)
    def job(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except CrowdsourceError:
            raise
        except Exception as exc:
            raise InvalidSubmission(failure(exc)) from None

    return job


# ---------------------------------------------------------------- prepared answers


class AnswerCache:
    """Dataset ids and prepared answers, loaded through the blob store once per version."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, int, int | None], Prepared] = OrderedDict()
        self._stores: dict[str, BlobStore] = {}
        self._lock = threading.Lock()

    def store(self, db_url: str) -> BlobStore:
        """This process's blob store for a database."""
        with self._lock:
            if db_url not in self._stores:
                self._stores[db_url] = BlobStore(db_url)
            return self._stores[db_url]

    def get(self, source: Source, spec: Spec) -> Prepared:
        """The sorted dataset ids and the truth for this spec (as given, on Dask)."""
        if not isinstance(source, str):
            return source
        db_url = source
        key = (db_url, spec.dataset_blob_id, spec.answer_blob_id)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        blobs = self.store(db_url)
        answer = None if spec.answer_blob_id is None else blobs.get(spec.answer_blob_id)
        value = _prepare(spec, blobs.get(spec.dataset_blob_id), answer)
        self.put(db_url, spec, value)
        return value

    def put(self, db_url: str, spec: Spec, value: Prepared) -> None:
        """Keep a prepared answer (loaded here, or made by hosting from the stored bytes)."""
        with self._lock:
            self._items[(db_url, spec.dataset_blob_id, spec.answer_blob_id)] = value
            while len(self._items) > self._size:
                self._items.popitem(last=False)


CACHE = AnswerCache()
_prepare = contained(prepare)


# ---------------------------------------------------------------- the jobs


def preload(source: Source, spec: Spec) -> None:
    """Load a competition's dataset ids and answer into this process's cache."""
    CACHE.get(source, spec)


def load(db_url: str, spec: Spec) -> tuple[bytes, bytes | None]:
    """A competition's stored dataset and answer, as Parquet bytes (to send to Dask)."""
    blobs = CACHE.store(db_url)
    answer = None if spec.answer_blob_id is None else blobs.get(spec.answer_blob_id)
    return blobs.get(spec.dataset_blob_id), answer


@contained
def _score(spec: Spec, prepared: Prepared, body: frames.Body, content_type: str | None) -> Scored:
    """Scoring proper, contained."""
    return score(spec, prepared, body, content_type)


def score_body(source: Source, spec: Spec, body: frames.Body, content_type: str | None) -> Scored:
    """Decode, validate, align and score one submission body: the unit of scoring work."""
    return _score(spec, CACHE.get(source, spec), body, content_type)


def score_and_store(
    source: Source, spec: Spec, body: frames.Body, content_type: str | None
) -> Scored:
    """Score a large body, then store its predictions from here, once the scoring arrays are
    freed: the server process never holds them. The outcome carries the blob's id. Handed
    the answer (on a Dask worker, with no database), it only scores: the server stores."""
    scored = _score(spec, CACHE.get(source, spec), body, content_type)
    if not isinstance(source, str):
        return scored
    db_url = source
    data = frames.as_bytes(body) if scored.predictions is None else scored.predictions
    return dataclasses.replace(scored, predictions=None, blob_id=CACHE.store(db_url).put(data))


def rescore(source: Source, spec: Spec, predictions: bytes) -> Scored:
    """Score stored predictions again, against the newest answer."""
    return _score(spec, CACHE.get(source, spec), predictions, frames.PARQUET)


# ---------------------------------------------------------------- where jobs run


def _warm() -> bool:
    """A no-op job that makes a worker start before the first real one."""
    return True


def end_with_parent(parent: int, sig: int) -> None:
    """Have the kernel send `sig` to this process when `parent` ends, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(0)


def _die_with(parent: int, limits: frames.Limits) -> None:
    """Set up a pool worker: end with the server process, even when it is SIGKILLed; read
    Parquet within the server's limits; log as the server does."""
    end_with_parent(parent, signal.SIGKILL)
    frames.set_limits(limits)
    logging.basicConfig(format="%(asctime)s scoring worker %(process)d %(levelname)s: %(message)s")


class Workers:
    """Runs jobs off the event loop: inline-sized ones on threads, big ones elsewhere."""

    def __init__(
        self,
        *,
        backend: str = "process",
        processes: int = 2,
        inline_bytes: int = 256 * 1024,
        dask_scheduler: str = "",
        timeout: float = 300.0,
        dask_fallback: str = "fail",
    ) -> None:
        if backend not in ("process", "thread", "dask"):
            raise ValueError(f"scoring backend must be process, thread or dask; got {backend!r}")
        if dask_fallback not in ("fail", "local"):
            raise ValueError(f"the Dask fallback must be fail or local; got {dask_fallback!r}")
        self.backend = backend
        self.processes = processes
        self.inline_bytes = inline_bytes
        self.timeout = timeout
        self.fallback = dask_fallback if backend == "dask" else "fail"
        # a Dask worker cannot read our spooled files (and may run elsewhere): ship bytes
        self.shares_files = backend != "dask"
        self._threads = ThreadPoolExecutor(4, thread_name_prefix="crowdsource-score")
        self._pool: Executor | None = None
        self._renewing = threading.Lock()
        self.dask: DaskScoring | None = None
        self._closing: asyncio.Task[None] | None = None
        if backend == "process" or self.fallback == "local":
            self._pool = self._new_pool()
        if backend == "dask":
            require("distributed", extra="dask", needed_for="--scoring=dask")
            self.dask = DaskScoring(
                scheduler=dask_scheduler, timeout=timeout, processes=processes, load=load
            )

    async def start(self) -> None:
        """Connect to Dask (on this loop); unreachable without a fallback: raises
        SchedulerUnreachable, whose message is the one line to show."""
        if self.dask is not None:
            await self.dask.start(required=self.fallback != "local")

    def status(self) -> dict[str, Any]:
        """Where scoring runs and whether it can now (cheap: for a readiness check)."""
        found: dict[str, Any] = {"backend": self.backend, "ready": True}
        if self.dask is not None:
            found.update(self.dask.status(), fallback=self.fallback)
            found["ready"] = self.fallback == "local" or (
                found["scheduler"] == "connected" and found["workers"] > 0
            )
        return found

    def ready(self) -> bool:
        """Whether a large submission can be scored now (on Dask, or by the fallback)."""
        return bool(self.status()["ready"])

    def _new_pool(self) -> ProcessPoolExecutor:
        """A process pool whose workers end with this process and share its limits."""
        return ProcessPoolExecutor(
            self.processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_die_with,
            initargs=(os.getpid(), frames.LIMITS),
        )

    def _renew(self, broken: Executor) -> None:
        """Replace a broken pool (once, however many of its jobs noticed)."""
        with self._renewing:
            if self._pool is broken:
                log.warning("a scoring worker died; starting a fresh scoring pool")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()

    def warm(self) -> None:
        """Start pool workers now rather than on the first big submission."""
        pool = self._pool
        if pool is not None and self.backend == "process":
            try:
                for future in [pool.submit(_warm) for _ in range(2)]:
                    future.result()
            except BrokenProcessPool:  # a worker was killed as it started: start afresh
                self._renew(pool)

    def problem(self) -> str | None:
        """What keeps large submissions from being scored now, for the readiness check."""
        if not self.ready():
            found = self.status()
            return (
                f"Dask cannot score now (scheduler {found.get('scheduler')}, "
                f"{found.get('workers', 0)} workers) and there is no --dask-fallback=local"
            )
        if self.backend == "process" and self._pool is None:
            return "the scoring pool is not running"
        return None

    def in_process(self, size: int) -> bool:
        """Whether a job of `size` bytes runs on a thread of this process."""
        return size <= self.inline_bytes or self.backend == "thread"

    async def run(self, size: int, fn: Callable[..., T], db: str, spec: Spec, *args: Any) -> T:
        """Run `fn(db, spec, *args)` off the loop (on Dask, `fn(answer, spec, *args)`);
        `size` (bytes of input) picks where."""
        loop = asyncio.get_running_loop()
        if self.in_process(size):
            return await loop.run_in_executor(self._threads, fn, db, spec, *args)
        if self.dask is not None:
            try:
                return cast(T, await self.dask.run(fn, db, spec, *args))
            except Away as exc:
                if self.fallback != "local":
                    raise exc.refusal() from None
                log.warning("%s; scoring on this machine instead", exc)
        return await self._on_pool(fn, db, spec, *args)

    async def _on_pool(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a job on the process pool, within the time limit."""
        loop = asyncio.get_running_loop()
        for _ in range(2):  # a worker that died costs its job one retry on a fresh pool
            pool = self._pool
            assert pool is not None
            try:
                return await asyncio.wait_for(loop.run_in_executor(pool, fn, *args), self.timeout)
            except BrokenProcessPool:
                self._renew(pool)
            except TimeoutError:
                raise Unavailable(
                    f"scoring took longer than the server's limit of {self.timeout:g} s "
                    "(--scoring-timeout); it was not scored",
                    retry_after=RETRY_AFTER,
                ) from None
        raise Unavailable(
            "the scoring worker for this submission stopped twice; nothing was recorded and no "
            f"quota was used: send it again in {RETRY_AFTER} seconds",
            retry_after=RETRY_AFTER,
        )

    def close(self) -> None:
        """Shut the pools down (and the Dask client, on a running loop)."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.dask is not None:
            with contextlib.suppress(RuntimeError):  # no loop: nothing of it runs any more
                self._closing = asyncio.get_running_loop().create_task(self.dask.close())

    async def closed(self) -> None:
        """Wait until the Dask client has closed (its connection ended cleanly)."""
        if self._closing is not None:
            await self._closing
