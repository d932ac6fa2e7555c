"""Load generators: `wrk` (preferred) and a small Python fallback with the same output shape.

Every throughput figure that is compared with another (our leaderboard reads against the
Tornado hello-world floor, our submissions against the original's) is taken with the same
generator and the same settings, so the ratio is fair even when the generator itself costs CPU
on this 2-core machine.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

WRK = shutil.which("wrk")

_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCHJSON {"requests": %d, "duration_us": %d, "bytes": %d, "err_connect": %d, '
    .. '"err_read": %d, "err_write": %d, "err_status": %d, "err_timeout": %d, '
    .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_quote(s: str) -> str:
    """A Lua string literal for s (every unusual byte as a 3-digit decimal escape)."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_./:=;,")
    return '"' + "".join(chr(b) if b in safe else f"\\{b:03d}" for b in s.encode()) + '"'


@dataclass
class LoadResult:
    """What one load run measured; latencies in milliseconds."""

    generator: str
    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    extra: dict = field(default_factory=dict)

    @property
    def rps(self) -> float:
        ok = max(0, self.requests - self.errors)
        return ok / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {
            "generator": self.generator,
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p90_ms": round(self.p90_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
        }


def _write_lua(
    tmp: Path,
    method: str,
    body_file: str | None,
    headers: dict[str, str],
    rotate_header: tuple[str, list[str]] | None,
    limit: int | None = None,
) -> Path:
    lines = [f"wrk.method = {_lua_quote(method)}"]
    if limit:
        lines.append("local answered = 0")
        lines.append("response = function(status, headers, body)")
        lines.append("  answered = answered + 1")
        lines.append(f"  if answered >= {int(limit)} then wrk.thread:stop() end")
        lines.append("end")
    for k, v in headers.items():
        lines.append(f"wrk.headers[{_lua_quote(k)}] = {_lua_quote(v)}")
    if body_file:
        lines.append(f"local f = assert(io.open({_lua_quote(body_file)}, 'rb'))")
        lines.append("wrk.body = f:read('*a')")
        lines.append("f:close()")
    if rotate_header:
        name, values = rotate_header
        lines.append("local vals = {" + ", ".join(_lua_quote(v) for v in values) + "}")
        lines.append("local n = 0")
        lines.append("request = function()")
        lines.append("  n = n + 1")
        lines.append(f"  wrk.headers[{_lua_quote(name)}] = vals[(n % #vals) + 1]")
        lines.append("  return wrk.format(nil, nil, nil, nil)")
        lines.append("end")
    script = tmp / "bench.lua"
    script.write_text("\n".join(lines) + "\n" + _LUA_DONE)
    return script


def run_wrk(
    url: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 1,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    rotate_header: tuple[str, list[str]] | None = None,
    timeout_s: float = 30.0,
    limit: int | None = None,
) -> LoadResult:
    """Run wrk against url and parse the JSON line its Lua `done` hook prints."""
    assert WRK, "wrk not installed"
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as td:
        tmp = Path(td)
        body_file = None
        if body is not None:
            body_file = str(tmp / "body.bin")
            Path(body_file).write_bytes(body)
        script = _write_lua(
            tmp,
            method,
            body_file,
            headers or {},
            rotate_header,
            None if not limit else max(1, limit // threads),
        )
        cmd = [
            WRK,
            f"-t{threads}",
            f"-c{max(connections, threads)}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={int(timeout_s)}s",
            "-s",
            str(script),
            url,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {out.stdout[-500:]} {out.stderr[-500:]}")
    d = json.loads(line[len("BENCHJSON ") :])
    errors = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_status"] + d["err_timeout"]
    return LoadResult(
        "wrk",
        d["requests"],
        d["duration_us"] / 1e6,
        errors,
        d["p50_us"] / 1e3,
        d["p90_us"] / 1e3,
        d["p99_us"] / 1e3,
        d["max_us"] / 1e3,
        extra=d,
    )


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def run_python(
    url: str,
    *,
    seconds: float,
    connections: int,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    rotate_header: tuple[str, list[str]] | None = None,
    timeout_s: float = 30.0,
    limit: int | None = None,
    **_: object,
) -> LoadResult:
    """Closed-loop load from `connections` threads, each with one keep-alive connection."""
    parts = urlsplit(url)
    path = parts.path + (("?" + parts.query) if parts.query else "")
    lat: list[list[float]] = [[] for _ in range(connections)]
    errs = [0] * connections
    stop_at = time.perf_counter() + seconds
    counter = [0]
    lock = threading.Lock()

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
        hdrs = dict(headers or {})
        while time.perf_counter() < stop_at:
            with lock:
                counter[0] += 1
                n = counter[0]
            if limit and n > limit:
                break
            if rotate_header:
                hdrs[rotate_header[0]] = rotate_header[1][n % len(rotate_header[1])]
            t0 = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                resp.read()
                if resp.status >= 400:
                    errs[i] += 1
            except (OSError, http.client.HTTPException):
                errs[i] += 1
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
            lat[i].append((time.perf_counter() - t0) * 1e3)
        conn.close()

    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    elapsed = time.perf_counter() - t0
    flat = [x for xs in lat for x in xs]
    return LoadResult(
        "python",
        len(flat),
        elapsed,
        sum(errs),
        percentile(flat, 50),
        percentile(flat, 90),
        percentile(flat, 99),
        max(flat or [0.0]),
    )


def load(url: str, **kw: object) -> LoadResult:
    """wrk when installed (or BENCH_LOADGEN=wrk), else the Python generator."""
    choice = os.environ.get("BENCH_LOADGEN", "wrk" if WRK else "python")
    if choice == "wrk" and WRK:
        return run_wrk(url, **kw)  # type: ignore[arg-type]
    kw.pop("threads", None)
    return run_python(url, **kw)  # type: ignore[arg-type]


def measured(
    pid: int | None,
    url: str,
    *,
    database: Callable[[], list[int]] | None = None,
    **kw: object,
) -> tuple[LoadResult, dict]:
    """`load()`, plus the server's CPU ms per request (server and its child processes) and,
    given `database` (the database's server processes now), theirs as `db_cpu_ms`."""
    from bench.common import CpuMeter, cpu_seconds

    meter = CpuMeter(pid) if pid else None
    before = {p: cpu_seconds(p) for p in database()} if database else {}
    res = load(url, **kw)
    d = res.as_dict()
    d["cpu_ms"] = meter.per_request_ms(res.requests) if meter else None
    if database and res.requests:
        used = sum(cpu_seconds(p) - before.get(p, 0.0) for p in database())
        d["db_cpu_ms"] = used * 1e3 / res.requests
    return res, d


def generator_name() -> str:
    choice = os.environ.get("BENCH_LOADGEN", "wrk" if WRK else "python")
    return "wrk" if (choice == "wrk" and WRK) else "python threads (http.client)"
