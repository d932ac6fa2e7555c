"""Scoring on a real Dask cluster: a `dask scheduler` and `dask worker` processes started
here on free ports, and a real crowdsource server with --scoring=dask in front of them.
Every wait is bounded generously; nothing asserts how fast anything is."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdsource.errors import BadRequest
from crowdsource.server.scoring.cluster import SchedulerUnreachable
from crowdsource.server.scoring.workers import Workers
from tests.api import Api
from tests.support import ServerProcess, refusing_port, run
from tests.test_scoring_faults import World, hosting, predictions

pytestmark = pytest.mark.timeout(900)
PARQUET = {"Content-Type": "application/vnd.apache.parquet"}
BIG_ROWS = 50_000  # a body well over --inline-kb: scored on the cluster
GENEROUS = 300.0  # seconds: "eventually", on a shared and busy machine


def eventually(check: Callable[[], Any], *, within: float = GENEROUS, every: float = 0.5) -> Any:
    """The first truthy value of `check()`, polling; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(every)


class Cluster:
    """A Dask scheduler and its workers, each a process of its own, in `workdir`; workers
    get an environment without any database URL and a working directory of their own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.file = workdir / "scheduler.json"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.port = 0

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """A `python -m distributed.cli.NAME` process logging to a file."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE")}
        cwd = self.workdir / f"{name}-{len(self.workers)}"
        cwd.mkdir(exist_ok=True)
        with open(self.workdir / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", f"distributed.cli.{name}", *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=log,
            )

    @property
    def address(self) -> str:
        """The scheduler's address, as the server is told."""
        return f"tcp://127.0.0.1:{self.port}"

    def start_scheduler(self) -> str:
        """Start the scheduler (on a free port the first time, the same one again after);
        returns its address once it has written its file."""
        self.file.unlink(missing_ok=True)
        self.scheduler = self._spawn(
            "dask_scheduler",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--scheduler-file={self.file}",
            "--no-dashboard",
        )
        info = eventually(lambda: self.file.exists() and json.loads(self.file.read_text()))
        self.port = int(info["address"].rsplit(":", 1)[1])
        return self.address

    def add_worker(self) -> subprocess.Popen[bytes]:
        """Start a worker (one thread, no nanny: killing it is final) and wait until the
        scheduler counts it."""
        before = self.count_workers()
        proc = self._spawn(
            "dask_worker",
            self.address,
            "--nthreads=1",
            "--no-nanny",
            "--no-dashboard",
            "--host=127.0.0.1",
        )
        self.workers.append(proc)
        eventually(lambda: self.count_workers() > before)
        return proc

    def client(self) -> Any:
        """A Client of the test's own, to look at the cluster."""
        from distributed import Client

        return Client(self.address, timeout=60, set_as_default=False)

    def count_workers(self) -> int:
        """How many workers the scheduler knows."""
        with self.client() as client:
            return len(client.scheduler_info(n_workers=-1)["workers"])

    def clients(self) -> int:
        """How many clients the scheduler has (this one's own among them)."""
        with self.client() as client:
            return int(client.run_on_scheduler(_clients))

    def kill_scheduler(self) -> None:
        """SIGKILL the scheduler."""
        if self.scheduler is not None:
            self.scheduler.send_signal(signal.SIGKILL)
            self.scheduler.wait()

    def kill_workers(self) -> None:
        """SIGKILL every worker."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()

    def stop(self) -> None:
        """Kill everything started."""
        self.kill_workers()
        self.kill_scheduler()


def _clients(dask_scheduler: Any) -> int:
    """On the scheduler: its clients, less the one for fire-and-forget tasks."""
    return len([c for c in dask_scheduler.clients if c != "fire-and-forget"])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A started scheduler without workers yet; all killed after the test."""
    found = Cluster(tmp_path)
    found.start_scheduler()
    yield found
    found.stop()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start a crowdsource server on a SQLite file in `tmp_path` with these options."""
    started: list[ServerProcess] = []

    def make(*extra: str) -> ServerProcess:
        server = ServerProcess(str(tmp_path / "crowdsource.db"), tmp_path, *extra).start(120)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def regress(host: Api, rows: int = BIG_ROWS) -> tuple[int, pd.DataFrame]:
    """Host a regression competition of `rows` rows; returns its id and a perfect answer."""
    rng = np.random.default_rng(rows)
    ids = rng.permutation(rows)
    answer = pd.DataFrame({"id": ids, "y": rng.normal(size=rows)})
    comp = host.host(
        type="regress",
        metric="rmse",
        targets=["y"],
        dataset={"format": "parquet", "data": _b64(answer[["id"]])},
        answer={"format": "parquet", "data": _b64(answer)},
    )
    return comp["id"], answer


def _b64(frame: pd.DataFrame) -> str:
    """A frame as base64 Parquet, as the API takes it in JSON."""
    import base64

    return base64.b64encode(parquet(frame)).decode()


def parquet(frame: pd.DataFrame) -> bytes:
    """A frame as Parquet bytes."""
    out = io.BytesIO()
    frame.to_parquet(out, index=False)
    return out.getvalue()


def submit(who: Api, cid: int, body: bytes, *, wait: bool = True) -> requests.Response:
    """Submit Parquet predictions."""
    return who.session.post(
        f"{who.url}/api/v1/competitions/{cid}/submissions",
        params={"wait": str(wait).lower()},
        data=body,
        headers=PARQUET,
        timeout=GENEROUS,
    )


def settled(who: Api, submission_id: int) -> dict[str, Any] | None:
    """A submission once it is no longer pending."""
    found = who.get(f"/submissions/{submission_id}").json()
    return None if found["state"] == "pending" else dict(found)


# ---------------------------------------------------------------- the normal path


def test_scores_on_the_cluster_whose_workers_have_no_database(
    cluster: Cluster, serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Large submissions, waited for or not, are scored on the workers, which get the answer
    through the cluster and never open the database (they were given no URL of it)."""
    cluster.add_worker()
    server = serve("--scoring=dask", f"--dask-scheduler={cluster.address}", "--inline-kb=16")
    host, bob = Api(server), Api(server)
    cid, answer = regress(host)
    scored = submit(bob, cid, parquet(answer))
    assert scored.status_code == 201, scored.text
    assert scored.json()["public_score"] == 0.0
    later = submit(bob, cid, parquet(answer.assign(y=answer.y + 1.0)), wait=False)
    assert later.status_code == 202, later.text
    assert eventually(lambda: settled(bob, later.json()["id"]))["public_score"] == 1.0
    db = str(tmp_path / "crowdsource.db")
    with cluster.client() as client:
        opened = client.run(_database_use, db)
    assert opened and all(found == {"stores": 0, "open": []} for found in opened.values())


def _database_use(db: str) -> dict[str, Any]:
    """On a worker: the blob stores it made, and its open files that are the database."""
    from crowdsource.server.scoring import workers

    files = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            files.append(os.readlink(f"/proc/self/fd/{fd}"))
    return {"stores": len(workers.CACHE._stores), "open": [f for f in files if db in f]}


def test_a_killed_worker_costs_its_job_a_rerun_elsewhere(
    cluster: Cluster, serve: Callable[..., ServerProcess]
) -> None:
    """A worker SIGKILLed while it scores: the scheduler runs the job on the other one and
    every submission is scored once."""
    first = cluster.add_worker()
    cluster.add_worker()
    server = serve("--scoring=dask", f"--dask-scheduler={cluster.address}", "--inline-kb=16")
    host, bob = Api(server), Api(server)
    cid, answer = regress(host, rows=400_000)
    body = parquet(answer)
    ids = [submit(bob, cid, body, wait=False).json()["id"] for _ in range(4)]
    with cluster.client() as client:
        address = next(a for a, pid in client.run(os.getpid).items() if pid == first.pid)
        eventually(lambda: client.processing().get(address), every=0.02)
    first.send_signal(signal.SIGKILL)
    first.wait()
    for submission_id in ids:
        done = eventually(lambda i=submission_id: settled(bob, i))
        assert done["state"] == "scored", done["reason"]
    mine = bob.get(f"/competitions/{cid}/submissions").json()["submissions"]
    assert sorted(s["id"] for s in mine) == sorted(ids)
    assert all(len(s["history"]) == 1 for s in mine)


# ---------------------------------------------------------------- the scheduler away


def test_scheduler_back_without_workers_large_ones_time_out_small_ones_score(
    cluster: Cluster, serve: Callable[..., ServerProcess]
) -> None:
    """The scheduler killed and started again with no worker: large submissions fail within
    --scoring-timeout with a reason that says so (nothing hangs), small `wait=false` ones are
    scored meanwhile on the server's threads; once a worker joins, large ones score again."""
    cluster.add_worker()
    server = serve(
        "--scoring=dask",
        f"--dask-scheduler={cluster.address}",
        "--inline-kb=16",
        "--scoring-timeout=30",
    )
    host, bob = Api(server), Api(server)
    cid, answer = regress(host)
    small_cid, small = regress(host, rows=50)
    assert submit(bob, cid, parquet(answer)).status_code == 201
    cluster.kill_workers()
    cluster.kill_scheduler()
    cluster.start_scheduler()
    eventually(lambda: cluster.clients() >= 2)  # the server reconnected (and this test)

    big = [submit(bob, cid, parquet(answer), wait=False).json()["id"] for _ in range(4)]
    waited: list[requests.Response] = []
    waiter = threading.Thread(target=lambda: waited.append(submit(bob, cid, parquet(answer))))
    waiter.start()
    few = [submit(bob, small_cid, parquet(small), wait=False).json()["id"] for _ in range(3)]
    for submission_id in few:
        assert eventually(lambda i=submission_id: settled(bob, i))["state"] == "scored"
    for submission_id in big:
        failed = eventually(lambda i=submission_id: settled(bob, i))
        assert failed["state"] == "failed"
        assert "--scoring-timeout" in failed["reason"]
    waiter.join(GENEROUS)
    assert waited[0].status_code == 503, waited[0].text
    assert "--scoring-timeout" in waited[0].json()["message"]
    assert waited[0].headers["Retry-After"]

    cluster.add_worker()
    assert eventually(lambda: submit(bob, cid, parquet(answer)).status_code == 201)


def test_a_client_that_gave_up_is_not_charged(
    cluster: Cluster, serve: Callable[..., ServerProcess]
) -> None:
    """A large submission whose client closed the request while no worker could score it is
    never recorded, even once a worker scores it: it neither counts nor appears."""
    server = serve(
        "--scoring=dask",
        f"--dask-scheduler={cluster.address}",
        "--inline-kb=16",
        "--scoring-timeout=600",
    )
    host, bob = Api(server), Api(server)
    cid, answer = regress(host)
    with pytest.raises(requests.Timeout):
        requests.post(
            f"{bob.url}/api/v1/competitions/{cid}/submissions",
            data=parquet(answer),
            headers={**PARQUET, "Authorization": f"Bearer {bob.token}"},
            timeout=5,
        )
    cluster.add_worker()
    kept = submit(bob, cid, parquet(answer))
    assert kept.status_code == 201, kept.text
    with cluster.client() as client:  # the abandoned job ran too (it was first in line)
        eventually(lambda: not any(client.processing().values()))
    time.sleep(2)  # its outcome reaches the server, which drops it
    mine = bob.get(f"/competitions/{cid}/submissions").json()["submissions"]
    assert [s["id"] for s in mine] == [kept.json()["id"]]


def test_scheduler_unreachable_at_start_is_one_clear_line(
    tmp_path: Path, serve: Callable[..., ServerProcess]
) -> None:
    """No scheduler at the address: the server exits with one line saying what to do, and
    no traceback (with several processes too, none started again); with
    --dask-fallback=local it starts and scores on its own pool."""
    with refusing_port() as port:
        server = ServerProcess(
            str(tmp_path / "crowdsource.db"),
            tmp_path,
            "--scoring=dask",
            f"--dask-scheduler=tcp://127.0.0.1:{port}",
        )
        with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler"):
            server.start(GENEROUS)
        assert server.proc is not None and server.proc.wait(GENEROUS) == 3
        assert "Traceback" not in server.log.read_text()
        assert "--dask-fallback=local" in server.log.read_text()

        several = ServerProcess(
            str(tmp_path / "crowdsource.db"),
            tmp_path,
            "--processes=2",
            "--scoring=dask",
            f"--dask-scheduler=tcp://127.0.0.1:{port}",
        )
        with pytest.raises(RuntimeError, match="cannot reach the Dask scheduler"):
            several.start(GENEROUS)
        assert several.proc is not None and several.proc.wait(GENEROUS) == 3
        assert "starting it again" not in several.log.read_text()

        local = serve(
            "--scoring=dask",
            f"--dask-scheduler=tcp://127.0.0.1:{port}",
            "--dask-fallback=local",
            "--inline-kb=16",
        )
        host, bob = Api(local), Api(local)
        cid, answer = regress(host)
        scored = submit(bob, cid, parquet(answer))
        assert scored.status_code == 201, scored.text
        assert scored.json()["public_score"] == 0.0


# ---------------------------------------------------------------- in process: given up


@pytest.fixture
def world(database: str) -> Iterator[World]:
    """The managers on a real database (SQLite file and PostgreSQL), scoring on threads."""
    found = World(database)
    yield found
    found.m.close()


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    checks_passed=st.integers(min_value=0, max_value=3),
    wait=st.booleans(),
    large=st.booleans(),
)
def test_a_submission_is_recorded_only_if_its_client_was_there(
    world: World, checks_passed: int, wait: bool, large: bool
) -> None:
    """Whenever the client goes away (before scoring, while scoring, before the insert), the
    submission is either refused unrecorded (no quota used, not listed) or recorded once
    and scored: never recorded for a client that was gone when it was written."""
    world.m.workers.inline_bytes = 10 if large else 1 << 20
    seen: list[bool] = []

    def gone() -> bool:
        seen.append(len(seen) >= checks_passed)
        return seen[-1]

    async def scenario() -> tuple[bool, list[dict[str, Any]]]:
        people, tag = world.m.participants, uuid.uuid4().hex[:12]
        host = await people.authenticate((await people.register(f"h-{tag}"))["token"])
        me = await people.authenticate((await people.register(f"p-{tag}"))["token"])
        spec = json.dumps({**hosting(metric="accuracy"), "daily_limit": 5}).encode()
        cid = (await world.m.competitions.host(host, spec, "application/json"))["id"]
        try:
            await world.m.submissions.submit(
                cid, me, predictions(), None, key=None, wait=wait, gone=gone
            )
            recorded = True
        except BadRequest as exc:
            assert "nothing was recorded" in exc.message
            recorded = False
        await asyncio.sleep(0)
        for _ in range(200):  # a wait=false one is scored in the background
            mine = await world.m.submissions.mine(me, cid)
            if all(s["state"] != "pending" for s in mine):
                break
            await asyncio.sleep(0.05)
        return recorded, mine

    recorded, mine = run(scenario())
    assert recorded == (True not in seen)
    assert len(mine) == int(recorded)
    if recorded:
        assert mine[0]["state"] == "scored" and len(mine[0]["history"]) == 1
        assert mine[0]["remaining_today"] == 4


# ---------------------------------------------------------------- in process: readiness


async def _until(check: Callable[[], bool]) -> None:
    """Wait on the loop until `check()` holds (generously)."""
    deadline = time.monotonic() + GENEROUS
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        await asyncio.sleep(0.2)


def test_readiness_follows_the_scheduler_and_its_workers(cluster: Cluster) -> None:
    """Ready with a connected scheduler that has a worker; not while it has none, nor while
    it is gone; connected again by itself once it is back at the same address."""

    async def scenario() -> list[dict[str, Any]]:
        workers = Workers(backend="dask", dask_scheduler=cluster.address, timeout=60)
        await workers.start()
        seen = [workers.status()]
        await asyncio.to_thread(cluster.add_worker)
        await _until(workers.ready)
        seen.append(workers.status())
        await asyncio.to_thread(cluster.stop)
        await _until(lambda: workers.status()["scheduler"] == "unreachable")
        seen.append(workers.status())
        await asyncio.to_thread(cluster.start_scheduler)
        await _until(lambda: workers.status()["scheduler"] == "connected")
        seen.append(workers.status())
        workers.close()
        await workers.closed()
        return seen

    alone, ready, lost, back = run(scenario())
    assert (alone["scheduler"], alone["workers"], alone["ready"]) == ("connected", 0, False)
    assert (ready["workers"], ready["ready"]) == (1, True)
    assert (lost["scheduler"], lost["ready"]) == ("unreachable", False)
    assert (back["scheduler"], back["ready"]) == ("connected", False)  # no worker yet


def test_an_unreachable_scheduler_with_the_fallback_is_ready_without_it() -> None:
    """With --dask-fallback=local a missing scheduler is no reason to refuse traffic; without
    it, starting fails with the one line the server prints."""

    async def scenario(port: int) -> tuple[dict[str, Any], str]:
        address = f"tcp://127.0.0.1:{port}"
        local = Workers(backend="dask", dask_scheduler=address, dask_fallback="local")
        await local.start()
        status = local.status()
        local.close()
        await local.closed()
        strict = Workers(backend="dask", dask_scheduler=address)
        with pytest.raises(SchedulerUnreachable) as refused:
            await strict.start()
        strict.close()
        return status, str(refused.value)

    with refusing_port() as port:
        status, message = run(scenario(port))
    assert (status["scheduler"], status["ready"], status["fallback"]) == (
        "unreachable",
        True,
        "local",
    )
    assert message.startswith(f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert "\n" not in message
