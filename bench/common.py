"""Shared helpers: ports, server processes, memory of a process, data generation."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import requests

ROOT = Path(__file__).resolve().parent.parent  # the project root
SHARED = Path(os.environ.get("CROWDSOURCE_SHARED", ROOT.parent / "shared"))
PARQUET = "application/vnd.apache.parquet"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A server subprocess with its log file; waits until a URL answers."""

    def __init__(
        self,
        cmd: list[str],
        log: Path,
        cwd: Path,
        env: dict | None = None,
        project_path: bool = False,
    ) -> None:
        self.project_path = project_path
        self.cmd = cmd
        self.log = log
        self.cwd = cwd
        self.env = env
        self.p: subprocess.Popen[bytes] | None = None

    def start(self, probe_url: str, timeout: float = 60.0) -> Proc:
        env = dict(self.env or os.environ)
        if self.project_path:  # the project's own package, even when not installed in the venv
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with open(self.log, "ab") as fh:
            self.p = subprocess.Popen(
                self.cmd, cwd=self.cwd, stdout=fh, stderr=fh, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"exited {self.p.returncode}: {self.tail()}")
            try:
                requests.get(probe_url, timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"did not answer within {timeout:.0f}s: {self.tail()}")

    @property
    def pid(self) -> int:
        assert self.p is not None
        return self.p.pid

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.p is None or self.p.poll() is not None:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (bytes) of a process from /proc/PID/status."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":", 1)
                out[key] = int(val.split()[0]) * 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (all threads)."""
    import psutil

    total = 0.0
    try:
        main = psutil.Process(pid)
        procs = [main, *main.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def wait_idle(pid: int, *, quiet_s: float = 0.5, timeout: float = 20.0) -> None:
    """Wait until a process tree stops using CPU (e.g. its worker pool finished starting)."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = cpu_seconds(pid)
        if now - last < 0.05 * quiet_s:
            return
        last = now


class CpuMeter:
    """CPU ms per request of a server during one load run: robust to a busy machine."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = cpu_seconds(pid)

    def per_request_ms(self, requests: int) -> float | None:
        used = cpu_seconds(self.pid) - self.start
        return used * 1e3 / requests if requests else None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs). False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def classify_data(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A binary classify competition of n rows: (dataset, answer, shuffled predictions).

    Predictions are probabilities for the true labels' classes; rows are shuffled so that the
    server (and the floor) must really align them by id.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int64) * 7 + 3  # not 0..n-1: alignment is real work
    dataset = pd.DataFrame({"id": ids, "x1": rng.random(n), "x2": rng.random(n)})
    label = rng.integers(0, 2, n).astype(np.int64)
    answer = pd.DataFrame({"id": ids, "label": label})
    p1 = np.clip(label * 0.6 + rng.random(n) * 0.4, 0.01, 0.99)
    order = rng.permutation(n)
    preds = pd.DataFrame({"id": ids[order], "p1": p1[order]})
    return dataset, answer, preds


def to_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def split_frame(df: pd.DataFrame) -> dict:
    """DataFrame as the split-form JSON frame of docs/api.md."""
    return {"columns": [str(c) for c in df.columns], "data": df.to_numpy().tolist()}


def machine() -> dict[str, str]:
    """nproc, CPU model, memory, OS, Python: the machine the figures come from."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    load = "unknown"
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    import platform

    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": load,
    }


PG_ADMIN = os.environ.get(
    "CROWDSOURCE_BENCH_PG",
    os.environ.get("CROWDSOURCE_TEST_PG", "postgresql://127.0.0.1:5432/test"),
)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A private PostgreSQL database on the server of `PG_ADMIN` (`CROWDSOURCE_BENCH_PG`,
    else the tests' `CROWDSOURCE_TEST_PG`); yields its SQLAlchemy URL, dropped after."""
    import uuid

    import psycopg

    name = f"cs_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def backends(url: str) -> list[int]:
    """The PostgreSQL server processes (backends) connected to the database of `url` now."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))
        return [int(pid) for (pid,) in rows]
