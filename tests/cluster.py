"""The deployment topology as real processes: PostgreSQL, two `crowdsource serve` behind HAProxy
(with the shipped examples/deploy/haproxy.cfg), and a Dask scheduler with two workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import requests

from tests.api import split
from tests.support import ServerProcess, postgres_database

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "examples" / "deploy" / "haproxy.cfg"
SERVERS = ("web1", "web2")


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll `check` until it returns something true; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError:
            raise
        except Exception as exc:  # a part still coming up: poll again
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def project_env() -> dict[str, str]:
    """The environment every part runs in: the project importable, no stray CROWDSOURCE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


class Process:
    """One long-running command with its output in a log file."""

    def __init__(self, name: str, cmd: list[str], workdir: Path, **env: str) -> None:
        self.name, self.cmd, self.workdir = name, cmd, workdir
        self.env = {**project_env(), **env}
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, pass_fds: tuple[int, ...] = ()) -> Process:
        """Start it (again)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
                pass_fds=pass_fds,
                start_new_session=True,
            )
        return self

    @property
    def alive(self) -> bool:
        """Whether it runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL it, as a crash or the OOM killer would."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM it; SIGKILL after 15 s."""
        if self.alive:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self) -> str:
        """The end of its log, for a failure message."""
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


class Dask:
    """A Dask scheduler and workers as separate processes (`dask scheduler`, `dask worker`)."""

    def __init__(self, workdir: Path, workers: int = 2) -> None:
        self.workdir = workdir
        self.scheduler_file = workdir / "scheduler.json"
        self.port = 0
        dask = str(Path(sys.executable).with_name("dask"))
        self._scheduler_cmd = [dask, "scheduler", "--host=127.0.0.1", "--no-dashboard"]
        self.scheduler: Process | None = None
        self.workers = [
            Process(
                f"dask-worker-{i}",
                [
                    dask,
                    "worker",
                    f"--scheduler-file={self.scheduler_file}",
                    "--nthreads=1",
                    "--no-nanny",  # a killed worker stays dead, as a lost machine would
                    "--no-dashboard",
                    f"--name=worker-{i}",
                ],
                workdir,
            )
            for i in (1, 2)[:workers]
        ]

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return f"tcp://127.0.0.1:{self.port}"

    def start_scheduler(self) -> None:
        """Start the scheduler: on a free port the first time, on the same port after."""
        self.scheduler_file.unlink(missing_ok=True)
        cmd = [
            *self._scheduler_cmd,
            f"--port={self.port}",
            f"--scheduler-file={self.scheduler_file}",
        ]
        self.scheduler = Process("dask-scheduler", cmd, self.workdir).start()
        info = wait_for("the Dask scheduler's file", self._scheduler_info, 60)
        self.port = int(info["address"].rsplit(":", 1)[1])

    def _scheduler_info(self) -> dict[str, Any] | None:
        assert self.scheduler is not None
        if not self.scheduler.alive:
            raise AssertionError(f"the scheduler exited: {self.scheduler.tail()}")
        if not self.scheduler_file.exists():
            return None
        return dict(json.loads(self.scheduler_file.read_text() or "null") or {})

    def start_workers(self) -> None:
        """Start every worker that is not running, until all have joined: as systemd's
        Restart=always does (a worker that loses its scheduler may exit, a while later)."""

        def joined() -> bool:
            for worker in self.workers:
                if not worker.alive:
                    worker.start()
            return len(self.worker_names()) == len(self.workers)

        wait_for(f"{len(self.workers)} Dask workers", joined, 180)

    def worker_names(self) -> set[str]:
        """The names of the workers the scheduler knows."""
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return {w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()}

    def tasks_run(self) -> int:
        """How many task transitions the scheduler (since its start) has made."""
        from distributed import Client

        with Client(self.address, timeout=10) as client:
            return int(
                client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
            )

    def wait_for_workers(self, n: int) -> None:
        """Wait until exactly `n` workers have joined the scheduler."""
        wait_for(f"{n} Dask workers", lambda: len(self.worker_names()) == n, 120)

    def stop(self) -> None:
        """Stop the workers, then the scheduler."""
        for worker in self.workers:
            worker.stop()
        if self.scheduler is not None:
            self.scheduler.stop()


class Balancer:
    """HAProxy, run with the shipped config; it listens on a socket this process bound on a
    free port and hands over (`bind fd@N`), so no other process can take the port first."""

    def __init__(self, workdir: Path, servers: list[ServerProcess]) -> None:
        assert shutil.which("haproxy"), "HAProxy is not installed: run `make system-deps`"
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.listener.set_inheritable(True)
        self.port = int(self.listener.getsockname()[1])
        self.admin = workdir / "haproxy.sock"
        addresses = {name: f"127.0.0.1:{s.port}" for name, s in zip(SERVERS, servers, strict=True)}
        self.process = Process(
            "haproxy",
            ["haproxy", "-db", "-f", str(HAPROXY_CFG)],
            workdir,
            CROWDSOURCE_BIND=f"fd@{self.listener.fileno()}",
            CROWDSOURCE_HAPROXY_SOCKET=str(self.admin),
            CROWDSOURCE_WEB1=addresses["web1"],
            CROWDSOURCE_WEB2=addresses["web2"],
        )

    @property
    def url(self) -> str:
        """The balancer's base URL: what every client uses."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Balancer:
        """Start HAProxy and wait until it sees both servers up."""
        self.process.start(pass_fds=(self.listener.fileno(),))
        for name in SERVERS:
            self.wait_until(name, "UP")
        return self

    def command(self, line: str) -> str:
        """One command on HAProxy's admin socket; its answer."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(self.admin))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self, name: str) -> str:
        """HAProxy's health status of a server: UP, DOWN, ... (from `show stat`)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(header, line.split(","), strict=False))
            if row.get("pxname") == "web" and row.get("svname") == name:
                return row["status"]
        raise AssertionError(f"HAProxy has no server {name}")

    def wait_until(self, name: str, status: str) -> None:
        """Wait until HAProxy's health checks give a server this status."""

        def reached() -> bool:
            if not self.process.alive:
                raise AssertionError(f"HAProxy exited: {self.process.tail()}")
            return self.status(name).startswith(status)

        wait_for(f"HAProxy marks {name} {status}", reached)

    def server_of(self, client_port: int) -> str | None:
        """The server a client connection (by its local port) is forwarded to."""
        for line in self.command("show sess").splitlines():
            if f"src=127.0.0.1:{client_port} " in line:
                for part in line.split():
                    if part.startswith("srv="):
                        return part.removeprefix("srv=")
        return None

    def register(self, name: str = "") -> dict:
        """Register a participant through the balancer (tests.api.Api calls this)."""
        r = requests.post(
            self.url + "/api/v1/participants",
            json={"name": name or f"p-{uuid.uuid4().hex[:12]}"},
            timeout=60,
        )
        r.raise_for_status()
        return dict(r.json())

    def stop(self) -> None:
        """Stop HAProxy and close the socket."""
        self.process.stop()
        self.listener.close()


@dataclass
class Cluster:
    """Every part, started; the test kills and restarts them."""

    db: str
    workdir: Path
    dask: Dask
    servers: dict[str, ServerProcess]
    balancer: Balancer

    @property
    def url(self) -> str:
        """Where clients connect."""
        return self.balancer.url

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of a query on the cluster's database, on a connection of the test's own."""
        url = self.db.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def terminate_database_connections(self) -> int:
        """pg_terminate_backend every connection to the cluster's database but this one."""
        name = self.db.rsplit("/", 1)[1]
        rows = self.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            name,
        )
        return len(rows)


@contextmanager
def cluster(workdir: Path) -> Iterator[Cluster]:
    """Start PostgreSQL's database, Dask, two servers and HAProxy; stop them all after."""
    with ExitStack() as stack:
        db = stack.enter_context(postgres_database())
        dask = Dask(workdir)
        stack.callback(dask.stop)
        dask.start_scheduler()
        dask.start_workers()
        secret = workdir / "crowdsource.secret"
        args = (
            "--scoring=dask",
            f"--dask-scheduler={dask.address}",
            f"--secret-file={secret}",
            "--inline-kb=16",  # small submissions on the server's threads, bigger on Dask
            # While the scheduler is away, big submissions are scored on the server's own
            # pool rather than failed: an acknowledged submission is always scored.
            "--dask-fallback=local",
        )
        servers = {name: ServerProcess(db, workdir, *args) for name in SERVERS}
        for server in servers.values():
            stack.callback(server.stop)
        with ThreadPoolExecutor(len(servers)) as pool:  # together: one migrates, one waits
            for started in [pool.submit(s.start, timeout=180) for s in servers.values()]:
                started.result()
        balancer = Balancer(workdir, list(servers.values()))
        stack.callback(balancer.stop)
        balancer.start()
        yield Cluster(db, workdir, dask, servers, balancer)


# ---------------------------------------------------------------- load that survives faults


def frame(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A classify dataset and its answer, `n` rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    dataset = pd.DataFrame({"id": ids, "x": rng.normal(size=n)})
    return dataset, pd.DataFrame({"id": ids, "label": rng.choice(["a", "b"], n)})


@dataclass
class Ack:
    """A submission the cluster acknowledged with a 2xx."""

    participant_id: int
    competition_id: int
    key: str
    id: int
    status: int
    remaining_today: int | None


@dataclass
class Submitter:
    """One participant submitting in a loop through the balancer, as a careful client does:
    every submission has its own Idempotency-Key, sent again (same key) after a connection
    error, a 5xx or a timeout until it is acknowledged."""

    url: str
    competition_id: int
    predictions: pd.DataFrame
    wait: bool = True
    acks: list[Ack] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        r = requests.post(
            self.url + "/api/v1/participants",
            json={"name": f"load-{uuid.uuid4().hex[:10]}"},
            timeout=60,
        )
        r.raise_for_status()
        self.participant_id = int(r.json()["id"])
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {r.json()['token']}"
        self.body = {"predictions": split(self.predictions)}
        self._stop = threading.Event()
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def submit_once(self) -> Ack:
        """Submit one new submission until it is acknowledged; the acknowledgement."""
        key = uuid.uuid4().hex
        path = f"{self.url}/api/v1/competitions/{self.competition_id}/submissions"
        params = {} if self.wait else {"wait": "false"}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            try:
                r = self.session.post(
                    path,
                    json=self.body,
                    params=params,
                    headers={"Idempotency-Key": key},
                    timeout=60,
                )
            except requests.RequestException as exc:
                self.errors.append(f"{type(exc).__name__}")
                time.sleep(0.5)
                continue
            if r.status_code in (200, 201, 202):
                body = r.json()
                return Ack(
                    self.participant_id,
                    self.competition_id,
                    key,
                    int(body["id"]),
                    r.status_code,
                    body.get("remaining_today"),
                )
            assert r.status_code >= 500 or r.status_code == 429, r.text  # never a 4xx of ours
            self.errors.append(f"{r.status_code} {r.text[:200]}")
            time.sleep(float(r.headers.get("Retry-After", 0.5)))
        raise AssertionError(f"submission {key} never acknowledged: {self.errors[-5:]}")

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.acks.append(self.submit_once())
        except BaseException as exc:  # reported by stop(), in the test's thread
            self.failure = exc

    def start(self) -> Submitter:
        """Submit in a loop on a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Finish the submission under way and stop."""
        self._stop.set()
        self._thread.join(660)
        assert not self._thread.is_alive(), "a submitter is stuck"
        if self.failure is not None:
            raise self.failure
