"""Where scoring runs: small jobs on a thread, large ones in a process pool or on Dask,
so the server's event loop never waits on a metric."""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies


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


def _die_with(parent: int) -> None:
    """Set up a pool worker: end with the server process, even when it is SIGKILLed."""
    end_with_parent(parent, signal.SIGKILL)
    import crowdsource.server.scoring.score  # noqa: F401  (imported once, before the first job)


class Workers:
    """Runs jobs off the event loop: inline-sized ones on threads, big ones elsewhere."""

    def __init__(
        self,
        *,
        backend: str = "process",
        processes: int = 2,
        inline_bytes: int = 256 * 1024,
        dask_scheduler: str = "",
    ) -> None:
        self.backend = backend
        self.inline_bytes = inline_bytes
        self.shares_files = not dask_scheduler  # a remote cluster cannot read our spooled files
        self._threads = ThreadPoolExecutor(4, thread_name_prefix="crowdsource-score")
        self._pool: Executor | None = None
        self._dask: Any = None
        if backend == "process":
            self._pool = ProcessPoolExecutor(
                processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_die_with,
                initargs=(os.getpid(),),
            )
        elif backend == "dask":
            from distributed import Client, LocalCluster

            cluster = dask_scheduler or LocalCluster(
                n_workers=processes, threads_per_worker=1, dashboard_address=None
            )
            self._dask = Client(cluster)
        elif backend != "thread":
            raise ValueError(f"scoring backend must be process, thread or dask; got {backend!r}")

    def warm(self) -> None:
        """Start pool workers now rather than on the first big submission."""
        if self._pool is not None:
            for future in [self._pool.submit(_warm) for _ in range(2)]:
                future.result()

    def in_process(self, size: int) -> bool:
        """Whether a job of `size` bytes runs on a thread of this process."""
        return size <= self.inline_bytes or self.backend == "thread"

    async def run(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` off the loop; `size` (bytes of input) picks where."""
        loop = asyncio.get_running_loop()
        if self.in_process(size):
            return await loop.run_in_executor(self._threads, fn, *args)
        if self._dask is not None:
            future = self._dask.submit(fn, *args, pure=False)
            return await loop.run_in_executor(self._threads, future.result)
        assert self._pool is not None
        return await loop.run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        """Shut the pools down."""
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._dask is not None:
            self._dask.close()
