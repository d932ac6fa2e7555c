"""Scoring on a Dask cluster, from the server's event loop: the distributed Client runs
asynchronously there, so no server thread ever waits on the scheduler; every job has a time
limit; a lost scheduler is reconnected to in the background; and the workers get each
competition's answer through the cluster (sent once per answer version, prepared there and
kept where its submissions are scored), so they need the `crowdsource` package and nothing
else: no database access.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from crowdsource import frames
from crowdsource.errors import Unavailable
from crowdsource.server.scoring.score import Prepared, Spec, prepare

log = logging.getLogger(__name__)
RECONNECT_EVERY = 2.0  # seconds between attempts to reach a lost scheduler
ANSWERS_KEPT = 16  # prepared answers held on the cluster, the least recently used dropped
RETRY_AFTER = 30  # seconds a refused participant is told to wait


class SchedulerUnreachable(Exception):
    """The Dask scheduler could not be reached at start (and no fallback was chosen)."""


class Away(Exception):
    """The cluster cannot score this job now (unreachable, lost, or over the time limit);
    the message says why, for the participant."""

    def refusal(self) -> Unavailable:
        """What the participant is told when there is no fallback."""
        return Unavailable(str(self), retry_after=RETRY_AFTER)


# ---------------------------------------------------------------- run on the workers


def on_worker(limits: frames.Limits, fn: Callable[..., Any], *args: Any) -> Any:
    """A job on a Dask worker, within the server's Parquet limits."""
    frames.set_limits(limits)
    return fn(*args)


def prepare_answer(
    limits: frames.Limits, spec: Spec, dataset: bytes, answer: bytes | None
) -> Prepared:
    """A competition's prepared answer, made on a worker from the scattered Parquet bytes."""
    from crowdsource.server.scoring.workers import contained

    frames.set_limits(limits)
    return contained(prepare)(spec, dataset, answer)


# ---------------------------------------------------------------- the server's side


class DaskScoring:
    """A Dask Client on the server's loop, kept connected, with the answers it scattered."""

    def __init__(
        self,
        *,
        scheduler: str,
        timeout: float,
        connect_timeout: float = 10.0,
        processes: int = 2,
        load: Callable[[str, Spec], tuple[bytes, bytes | None]],
    ) -> None:
        self.scheduler = scheduler  # empty: a local cluster, started here
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.processes = processes
        self.load = load  # reads a competition's dataset and answer bytes (on a thread)
        self.client: Any = None
        self._cluster: Any = None
        self._keeper: asyncio.Task[None] | None = None
        self._answers: OrderedDict[tuple[int, int, int | None], Any] = OrderedDict()
        self._preparing = asyncio.Lock()

    @property
    def where(self) -> str:
        """The scheduler, for messages."""
        return f"the Dask scheduler at {self.scheduler}" if self.scheduler else "the local Dask"

    async def start(self, *, required: bool) -> None:
        """Connect, then keep connected; unreachable and `required`: SchedulerUnreachable."""
        try:
            self.client = await self._connect()
        except Exception as exc:
            if required:
                raise SchedulerUnreachable(
                    f"cannot reach {self.where} ({exc}); start it, check --dask-scheduler, "
                    "or pass --dask-fallback=local to score on this machine meanwhile"
                ) from None
            log.warning("cannot reach %s (%s): scoring locally until it is back", self.where, exc)
        self._keeper = asyncio.get_running_loop().create_task(self._keep())

    async def _connect(self) -> Any:
        """A running asynchronous Client (and a local cluster first without a scheduler)."""
        from distributed import Client, LocalCluster

        address: Any = self.scheduler
        if not address:
            if self._cluster is None:
                self._cluster = await LocalCluster(
                    n_workers=self.processes,
                    threads_per_worker=1,
                    dashboard_address=None,
                    asynchronous=True,
                )
            address = self._cluster
        client = Client(
            address, asynchronous=True, timeout=self.connect_timeout, set_as_default=False
        )
        try:
            return await asyncio.wait_for(client, self.connect_timeout + 1)
        except BaseException:
            with contextlib.suppress(Exception):
                await client.close()
            raise

    async def _keep(self) -> None:
        """Replace a Client that gave up reconnecting (the scheduler was away longer than its
        own reconnection lasts), for as long as the server runs."""
        while True:
            await asyncio.sleep(RECONNECT_EVERY)
            if self.client is not None and self.client.status in ("running", "connecting"):
                continue
            old, self.client = self.client, None
            if old is not None:
                with contextlib.suppress(Exception):
                    await old.close()
            try:
                self.client = await self._connect()
                log.info("connected to %s again", self.where)
            except Exception as exc:
                log.debug("still cannot reach %s: %s", self.where, exc)

    def status(self) -> dict[str, Any]:
        """Whether the scheduler is connected and how many workers it has (cached: cheap)."""
        client = self.client
        if client is None or client.status != "running":
            return {"scheduler": "unreachable", "workers": 0}
        info = client.scheduler_info() or {}
        workers = info.get("n_workers", len(info.get("workers", {})))
        return {"scheduler": "connected", "workers": int(workers)}

    async def run(self, fn: Callable[..., Any], db: str, spec: Spec, *args: Any) -> Any:
        """`fn(answer, spec, *args)` on a worker, within the time limit; Away if it cannot."""
        client = self.client
        if client is None or client.status != "running":
            raise Away(f"{self.where} is unreachable; the server reconnects by itself")
        try:
            return await asyncio.wait_for(self._run(client, fn, db, spec, *args), self.timeout)
        except TimeoutError:
            raise Away(
                f"scoring took longer than the server's limit of {self.timeout:g} s "
                f"(--scoring-timeout) on {self.where}: the cluster is busy or has no workers"
            ) from None

    async def _run(
        self, client: Any, fn: Callable[..., Any], db: str, spec: Spec, *args: Any
    ) -> Any:
        """Submit the job beside its answer and await it (cancelled if this is); once more
        if the cluster lost the answer meanwhile (every worker that held it died)."""
        from distributed.client import FutureCancelledError

        for attempt in (1, 2):
            answer = await self._answer(client, db, spec)
            future = client.submit(on_worker, frames.LIMITS, fn, answer, spec, *args, pure=False)
            try:
                return await future
            except FutureCancelledError:
                self._forget(answer)
                if attempt == 2 or client.status != "running":
                    raise Away(f"lost the connection to {self.where} while scoring") from None
                log.warning("%s lost a prepared answer; preparing it again", self.where)
            finally:
                if not future.done():  # over the time limit: free the worker
                    with contextlib.suppress(Exception):
                        await client.cancel([future])
        raise AssertionError("not reached")

    def _forget(self, answer: Any) -> None:
        """Drop a prepared answer the cluster lost."""
        for key, found in list(self._answers.items()):
            if found is answer:
                del self._answers[key]

    async def _answer(self, client: Any, db: str, spec: Spec) -> Any:
        """The future of a competition's prepared answer on the cluster, made there once per
        answer version from the Parquet bytes this server reads, and kept; the workers that
        score its submissions fetch it from the one holding it. The bytes go in the task
        itself rather than scattered: if every worker holding the answer dies, the
        scheduler prepares it again on another (scattered data would be lost for good)."""
        key = (spec.competition_id, spec.dataset_blob_id, spec.answer_blob_id)
        async with self._preparing:
            found = self._answers.get(key)
            live = found is not None and found.status in ("pending", "finished")
            if live and found is not None and found.client is client:
                self._answers.move_to_end(key)
                return found
            loop = asyncio.get_running_loop()
            dataset, answer = await loop.run_in_executor(None, self.load, db, spec)
            with warnings.catch_warnings():  # a large answer in the task is meant
                warnings.simplefilter("ignore")
                prepared = client.submit(
                    prepare_answer, frames.LIMITS, spec, dataset, answer, pure=False
                )
            self._answers[key] = prepared
            while len(self._answers) > ANSWERS_KEPT:
                self._answers.popitem(last=False)
            return prepared

    async def close(self) -> None:
        """Stop reconnecting; close the Client (and a local cluster)."""
        if self._keeper is not None:
            self._keeper.cancel()
        self._answers.clear()
        for part in (self.client, self._cluster):
            if part is not None:
                with contextlib.suppress(Exception):
                    await part.close()
