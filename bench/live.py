"""Issue 12's rows of `make bench`: one competition whose public board holds 10,000
participants (seeded with `tests.support.seed_board`), watched live by 1,000 WebSockets of
one separate process (`bench/watchers.py`; half read everything, half never read).

1. Scored submissions/s (8 `wrk` clients) with no watcher, then with the 1,000: the ratio.
2. Meanwhile one more participant submits with `?wait=true` every 100 ms: from each 201 to
   the moment a reading watcher sees that participant's entry with its new submissions count
   (in a `leaderboard.delta`, a snapshot, or today's whole-board `leaderboard.changed`): p99.
3. The server process's RSS growth over 5,000 more submissions with the 1,000 watchers.

Every phase is bounded in time; if the server's RSS grows past `live_rss_cap` the watchers
are closed (the row says so) rather than let one process take the machine's memory.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench import ours
from bench.common import PARQUET, ROOT, classify_data, to_parquet
from bench.loadgen import load, measured, percentile, run_python
from bench.watchers import raise_open_files
from tests.support import seed_board


class Prober(threading.Thread):
    """One participant submitting with `?wait=true` every `interval` s: when each 201 came,
    and the submissions count it made."""

    def __init__(self, srv: ours.Server, cid: int, token: str, body: bytes, interval: float):
        super().__init__(daemon=True)
        self.srv, self.cid, self.token, self.body, self.interval = srv, cid, token, body, interval
        self.acks: list[tuple[int, float]] = []  # (count, time.monotonic() of its 201)
        self.errors = 0
        self.done = threading.Event()
        self.going = threading.Event()  # cleared: paused (while the watchers connect)
        self.going.set()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
        path = f"/api/v1/competitions/{self.cid}/submissions?wait=true"
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": PARQUET}
        nxt = time.monotonic()
        while not self.done.is_set():
            self.going.wait()
            try:
                conn.request("POST", path, body=self.body, headers=headers)
                r = conn.getresponse()
                r.read()
                if r.status == 201:
                    self.acks.append((len(self.acks) + 1, time.monotonic()))
                else:
                    self.errors += 1
            except (OSError, http.client.HTTPException):
                self.errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.srv.port, timeout=30)
            nxt = max(nxt + self.interval, time.monotonic())
            self.done.wait(nxt - time.monotonic())
        conn.close()

    def stop(self) -> None:
        self.done.set()
        self.going.set()
        self.join(35)


class Watchers:
    """The watcher process (bench/watchers.py), spoken to through its stdin and stdout."""

    def __init__(self, srv: ours.Server, cid: int, participant: int, cfg: dict) -> None:
        cmd = [
            sys.executable,
            str(ROOT / "bench" / "watchers.py"),
            f"--url={srv.url.replace('http', 'ws', 1)}/api/v1/events",
            f"--competition={cid}",
            f"--participant={participant}",
            f"--count={cfg['live_watchers']}",
            f"--probes={cfg['live_probes']}",
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.ready = self._line("READY", timeout=120)

    def _line(self, tag: str, timeout: float) -> dict:
        """The next line starting with `tag`, parsed (bounded in time)."""
        stdout = self.proc.stdout
        assert stdout is not None
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = found[0] if found else ""
        if not line.startswith(tag + " "):
            raise RuntimeError(f"the watchers said {line[:200]!r}, not {tag} (within {timeout} s)")
        return dict(json.loads(line[len(tag) + 1 :]))

    def report(self, *, stop: bool = False) -> dict:
        """What the watchers received so far (and, with `stop`, end them)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("stop\n" if stop else "report\n")
        self.proc.stdin.flush()
        out = self._line("REPORT", timeout=60)
        if stop:
            self.proc.wait(30)
        return out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RssGuard(threading.Thread):
    """Samples the server's RSS every 0.2 s: its peak, and closes the watchers if it grows
    past `cap` bytes over `base`."""

    def __init__(self, pid: int, base: int, cap: int, on_cap: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.proc, self.base, self.cap, self.on_cap = psutil.Process(pid), base, cap, on_cap
        self.peak = base
        self.capped_at: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            rss = self.proc.memory_info().rss
            self.peak = max(self.peak, rss)
            if self.capped_at is None and rss - self.base > self.cap:
                self.capped_at = rss
                self.on_cap()

    def stop(self) -> None:
        self.done.set()
        self.join(5)


def rss(pid: int) -> int:
    """The RSS of one process, in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


def latencies(acks: list[tuple[int, float]], sightings: dict, t0: float, t1: float) -> dict:
    """From each 201 in [t0, t1] to the first sighting of its count (or a higher one) by each
    probe watcher, in ms; a count never seen counts as missed (and as infinitely late)."""
    out: list[float] = []
    missed = 0
    for count, acked in acks:
        if not t0 <= acked <= t1:
            continue
        for seen in sightings.values():
            when = next((t for c, t in seen if c >= count), None)
            if when is None:
                missed += 1
                out.append(float("inf"))
            else:
                out.append(max(0.0, when - acked) * 1e3)
    finite = [x for x in out if x != float("inf")]
    return {
        "samples": len(out),
        "submissions": sum(1 for _, a in acks if t0 <= a <= t1),
        "watchers": len(sightings),
        "missed": missed,
        "p50_ms": percentile(out, 50) if out else None,
        "p99_ms": percentile(out, 99) if out else None,
        "max_seen_ms": max(finite) if finite else None,
    }


def _setup(srv: ours.Server, cfg: dict, workdir: Path, log: Callable) -> dict:
    """A competition, 8 submitters and a probe through the API; then 10,000 seeded entries
    (server stopped meanwhile, so it builds the board from the database when it restarts)."""
    dataset, answer, preds = classify_data(cfg["rows_small"], seed=5)
    comp = srv.host(srv.register("live-host"), "live: a board of 10,000", dataset, answer)
    tokens = [srv.register(f"live-client-{i}") for i in range(8)]
    r = srv.http.post(srv.api + "/participants", json={"name": "live-probe"}, timeout=30)
    ours._check(r, 201)
    body = to_parquet(ours.prediction_frame(comp, preds))
    srv.stop()
    t0 = time.monotonic()
    seed_board(
        db=str(workdir / "bench.db"),
        competition_id=comp["id"],
        predictions=body,
        participants=cfg["live_participants"],
        prefix="live-seeded",
    )
    log(f"  live: seeded {cfg['live_participants']:,} entries in {time.monotonic() - t0:.1f}s")
    srv.start()
    entries = srv.board(comp["id"])["entries"]  # today's server builds its board on a read
    if len(entries) != cfg["live_participants"]:
        raise RuntimeError(f"the board has {len(entries)} entries after seeding")
    return {
        "cid": comp["id"],
        "tokens": tokens,
        "probe": r.json(),
        "body": body,
    }


def run(cfg: dict, log: Callable) -> dict:
    """The three measurements on one fresh server (SQLite), in one run."""
    raise_open_files()  # the server and the watcher process inherit it
    with tempfile.TemporaryDirectory(prefix="bench-live-") as td:
        work = Path(td)
        srv = ours.Server(work)
        srv.start()
        try:
            return _measure(srv, _setup(srv, cfg, work, log), cfg, log)
        finally:
            srv.stop()


def _measure(srv: ours.Server, s: dict, cfg: dict, log: Callable) -> dict:
    cid, body = s["cid"], s["body"]
    url = f"{srv.api}/competitions/{cid}/submissions"
    kw: dict[str, Any] = dict(
        method="POST",
        body=body,
        headers={"Content-Type": PARQUET},
        rotate_header=("Authorization", [f"Bearer {t}" for t in s["tokens"]]),
    )
    out: dict[str, Any] = {"participants": cfg["live_participants"]}
    prober = Prober(srv, cid, s["probe"]["token"], body, cfg["live_probe_interval_s"])
    prober.start()
    watchers: Watchers | None = None
    try:
        load(url, seconds=cfg["warmup_s"], connections=8, **kw)
        _, out["alone"] = measured(srv.proc.pid, url, seconds=cfg["live_dur"], connections=8, **kw)
        log(f"  live: no watcher: {out['alone']['rps']:.0f} submissions/s")

        prober.going.clear()  # connecting is not measured: no change meanwhile
        time.sleep(1)
        watchers = Watchers(srv, cid, s["probe"]["id"], cfg)
        prober.going.set()
        out["connect"] = watchers.ready
        log(
            f"  live: {watchers.ready['connected']} watchers connected in "
            f"{watchers.ready['seconds']:.1f}s ({watchers.ready['failures']} failed)"
        )
        base = rss(srv.proc.pid)
        guard = RssGuard(srv.proc.pid, base, cfg["live_rss_cap"], watchers.kill)
        guard.start()
        t0 = time.monotonic()
        _, out["watched"] = measured(
            srv.proc.pid, url, seconds=cfg["live_dur"], connections=8, **kw
        )
        t1 = time.monotonic()
        log(f"  live: {cfg['live_watchers']} watchers: {out['watched']['rps']:.0f} submissions/s")
        prober.stop()
        time.sleep(cfg["live_settle_s"])  # the last changes reach the watchers
        if guard.capped_at is None:
            seen = watchers.report()
            out["latency"] = latencies(prober.acks, seen["sightings"], t0, t1)
            out["received"] = {k: v for k, v in seen.items() if k != "sightings"}
            lat = out["latency"]
            log(
                f"  live: 201 to a reading watcher: p99 {_ms(lat['p99_ms'])} over "
                f"{lat['samples']} samples ({lat['missed']} never seen)"
            )
            out["memory"] = _memory(srv, url, kw, cfg, guard)
            log(
                f"  live: RSS +{out['memory']['growth'] / 2**20:.0f} MiB over "
                f"{out['memory']['submissions']:,} submissions"
            )
        guard.stop()
        out["rss"] = {"base": base, "peak": guard.peak, "capped_at": guard.capped_at}
        if guard.capped_at is None:
            out["received"] = {
                k: v for k, v in watchers.report(stop=True).items() if k != "sightings"
            }
        else:
            out["aborted"] = (
                f"the server's RSS grew past +{cfg['live_rss_cap'] / 2**20:,.0f} MiB "
                f"(to {guard.capped_at / 2**20:,.0f} MiB): the watchers were closed"
            )
            log(f"  live: {out['aborted']}")
        out["probe_errors"] = prober.errors
        return out
    finally:
        prober.stop()
        if watchers is not None:
            watchers.kill()


def _memory(srv: ours.Server, url: str, kw: dict, cfg: dict, guard: RssGuard) -> dict:
    """RSS before and after `live_submissions` more submissions (bounded in time)."""
    before = rss(srv.proc.pid)
    guard.peak = before
    res = run_python(  # stops at the limit (wrk runs its whole duration)
        url,
        seconds=cfg["live_mem_cap_s"],
        connections=8,
        limit=cfg["live_submissions"],
        **kw,
    )
    time.sleep(cfg["live_settle_s"])
    after = rss(srv.proc.pid)
    return {
        "before": before,
        "after": after,
        "growth": after - before,
        "peak_growth": max(guard.peak, after) - before,
        "submissions": max(0, res.requests - res.errors),
        "seconds": round(res.seconds, 1),
        "target": cfg["live_submissions"],
        "capped": guard.capped_at is not None,
    }


def rows(res: dict) -> list[dict]:
    """The table's rows for issue 12 (none when the workload was not run)."""
    if "live" not in res:
        return []
    lv = res["live"]
    n = f"{lv.get('participants', 10_000):,}"
    w = f"{res.get('config', {}).get('live_watchers', 1000):,}"
    if "error" in lv:
        return [_row(f"A {n}-entry board with {w} watchers", f"failed: {lv['error']}", "-")]
    alone, watched = lv["alone"]["rps"], lv["watched"]["rps"]
    share = watched / alone * 100 if alone else None
    aborted = lv.get("aborted")
    lat = lv.get("latency") or {}
    mem = lv.get("memory") or {}
    got = lv.get("received") or {}
    closes = ", ".join(f"{n} closed {code}" for code, n in (got.get("closes") or {}).items())
    out = [
        _row(
            f"Scored submissions/s (8 clients) on a {n}-entry board, {w} WebSocket watchers "
            "of it (half read everything, half never read) against none",
            f"{watched:,.0f}/s{ours_cpu(lv['watched'])}",
            f"{alone:,.0f}/s with no watcher{ours_cpu(lv['alone'])}",
            ratio="-" if share is None else f"{share:.0f}%",
            target="≥ 80%",
            met=None if share is None else share >= 80,
        )
    ]
    p99 = lat.get("p99_ms")
    out.append(
        _row(
            "A score recorded (the 201 of a `wait=true` submission, one every "
            f"{res.get('config', {}).get('live_probe_interval_s', 0.1) * 1e3:.0f} ms, beside the "
            "8 clients) until a reading watcher sees the entry's new count, p99",
            (aborted if not lat else None)
            or (
                f"p99 {_ms(p99)}, p50 {_ms(lat.get('p50_ms'))} ({lat['samples']:,} sightings: "
                f"{lat['submissions']} submissions x {lat['watchers']} watchers; "
                f"{lat['missed']} never seen)"
                if lat.get("samples")
                else "no submission was acknowledged during the run"
            ),
            "-",
            ratio="-",
            target="≤ 250 ms",
            met=None if p99 is None else p99 <= 250,
        )
    )
    growth: float | None = mem.get("growth")
    cell, met = aborted or "not measured", None
    if growth is not None and not mem.get("capped"):
        cell = (
            f"+{growth / 2**20:,.0f} MiB (peak +{mem['peak_growth'] / 2**20:,.0f} MiB; "
            f"{mem['submissions']:,} submissions in {mem['seconds']:.0f} s"
            + (f"; readers: {closes}" if closes else "")
            + ")"
        )
        met = growth < 100e6 and mem["submissions"] >= mem["target"]  # all of them, in time
    out.append(
        _row(
            f"Server RSS growth over {mem.get('target', 5000):,} submissions with the {w} watchers",
            cell,
            "-",
            target="< 100 MB",
            met=met,
        )
    )
    return out


def ours_cpu(d: dict) -> str:
    ms = d.get("cpu_ms")
    return "" if ms is None else f" ({ms:,.2f} CPU ms each)"


def _ms(x: float | None) -> str:
    if x is None:
        return "-"
    return "never (missed)" if x == float("inf") else f"{x:,.0f} ms"


def _row(
    what: str,
    ours_cell: str,
    floor: str,
    *,
    ratio: str = "-",
    target: str = "(issue 12)",
    met: bool | None = None,
) -> dict:
    return {
        "id": "12",
        "workload": what,
        "ours": ours_cell,
        "peer": "not run (no event stream)",
        "floor": floor,
        "ratio": ratio,
        "target": target,
        "met": "-" if met is None else ("**yes**" if met else "**no**"),
    }
