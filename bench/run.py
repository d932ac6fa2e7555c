"""`make bench`: this project, the published original and the machine's floor, in one run.

    .venv/bin/python bench/run.py            # full run (< 5 min), writes BENCHMARKS.md
    .venv/bin/python bench/run.py --smoke    # tiny sizes (< 60 s), writes nothing committed
    .venv/bin/python bench/run.py --no-peer  # skip the original (its column says "not run")
    .venv/bin/python bench/run.py --only hosting  # one workload alone (writes nothing committed)

See bench/README.md for what each workload measures and how.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (
    cluster,
    firstboard,
    firstpaint,
    floor,
    hosting,
    live,
    ours,
    peer,
    report,
    widget_reload,
)
from bench.common import (
    PG_ADMIN,
    ROOT,
    backends,
    classify_data,
    machine,
    postgres_database,
    to_parquet,
)
from bench.loadgen import generator_name

FULL = {
    "rows_small": 1000,
    "rows_big": 1_000_000,
    "dur": 4,
    "dur_read": 3,
    "read_conns": 10,
    "board_levels": [1000, 10_000, 100_000],
    "board_participants": 100,
    "big_repeats": 3,
    "compete_runs": 20,
    "read_interval_s": 0.01,
    "deadline_s": 300,
    "reserve_s": 15,
    "warmup_s": 1,
    "hosting_runs": 30,
    # issue 12: a board of 10,000 and 1,000 watchers (bench/live.py)
    "live_participants": 10_000,
    "live_watchers": 1000,
    "live_probes": 20,
    "live_dur": 5,
    "live_probe_interval_s": 0.1,
    "live_submissions": 5000,
    "live_mem_cap_s": 45,
    "live_settle_s": 2,
    "live_rss_cap": 2 * 2**30,
    "paint_loads": 5,  # issue 12: first paint of /leaderboard on the 10,000 board (firstpaint.py)
    "kernel_runs": 3,  # issue 13: first %crowdsource leaderboard of a fresh kernel (firstboard.py)
    "reload_loads": 5,  # issue 13: reloads of a notebook showing the widget (widget_reload.py)
}
SMOKE = {
    "rows_small": 200,
    "rows_big": 20_000,
    "dur": 1,
    "dur_read": 1,
    "read_conns": 4,
    "board_levels": [50, 150],
    "board_participants": 5,
    "big_repeats": 1,
    "compete_runs": 3,
    "read_interval_s": 0.01,
    "deadline_s": 55,
    "reserve_s": 3,
    "warmup_s": 1,
    "skip_json": True,
    "hosting_runs": 5,
    "live_participants": 500,
    "live_watchers": 20,
    "live_probes": 4,
    "live_dur": 1,
    "live_probe_interval_s": 0.1,
    "live_submissions": 100,
    "live_mem_cap_s": 5,
    "live_settle_s": 1,
    "live_rss_cap": 2**30,
    "paint_loads": 2,
    "kernel_runs": 1,
    "reload_loads": 2,
}
WORKLOADS = (
    "hello",
    "floor_score",
    "peer",
    "hosting",
    "w1",
    "w1_pg",
    "w2",
    "w4",
    "w1_multi",
    "w3",
    "cluster",
    "live",
    "first_paint",
    "first_board",
    "widget_reload",
)


def log(msg: str) -> None:
    print(msg, flush=True)


def attempt(results: dict, key: str, fn, *args) -> None:
    """Run one measurement; on failure record why and carry on with the rest."""
    t0 = time.monotonic()
    try:
        results[key] = fn(*args)
    except Exception as exc:
        results[key] = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"  {key} FAILED: {type(exc).__name__}: {exc}")
        if "--debug" in sys.argv:
            traceback.print_exc()
    results.setdefault("timings", {})[key] = round(time.monotonic() - t0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, < 60 s; writes no table")
    ap.add_argument("--no-peer", action="store_true", help="do not run the original")
    ap.add_argument(
        "--peer",
        action="store_true",
        help="with --smoke: run the original too (if its venv is set up)",
    )
    ap.add_argument(
        "--out",
        help="where to write the table (default BENCHMARKS.md; "
        "with --smoke, bench/.peer/BENCHMARKS.smoke.md)",
    )
    ap.add_argument(
        "--only",
        choices=WORKLOADS,
        help="run one workload alone (with the original, for the ones it has); writes "
        "bench/.peer/BENCHMARKS.only.md, never BENCHMARKS.md",
    )
    ap.add_argument("--debug", action="store_true", help="print tracebacks")
    args = ap.parse_args()
    cfg = dict(SMOKE if args.smoke else FULL)

    def want(key: str) -> bool:
        # the PostgreSQL rows are read against SQLite's of the same run
        return args.only in (None, key) or (args.only, key) == ("w1_pg", "w1")

    started = time.monotonic()
    deadline = started + cfg["deadline_s"]
    kind = "only" if args.only else "smoke" if args.smoke else None
    out = (
        Path(args.out)
        if args.out
        else ROOT / "bench" / ".peer" / f"BENCHMARKS.{kind}.md"
        if kind
        else ROOT / "BENCHMARKS.md"
    )
    cmd = (
        "make bench  (.venv/bin/python bench/run.py"
        + (" --smoke" if args.smoke else "")
        + (" --no-peer" if args.no_peer else "")
        + (f" --only {args.only}" if args.only else "")
        + ")"
    )
    results: dict = {
        "machine": machine(),
        "smoke": args.smoke,
        "only": args.only,
        "config": cfg,
        "generator": generator_name(),
        "command": cmd,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    try:
        results["commit"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip() + (
            " (uncommitted changes)"
            if subprocess.run(
                ["git", "-C", str(ROOT), "status", "--porcelain", "--", "crowdsource"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            else ""
        )
    except OSError:
        results["commit"] = "unknown"
    log(
        f"bench ({'smoke' if args.smoke else 'full'}) on {results['machine']['cpu']}, "
        f"{results['machine']['nproc']} CPUs, load {results['machine']['loadavg_at_start']}; "
        f"load generator: {results['generator']}"
    )

    # ---- the floor
    log("floor: Tornado hello-world" if want("hello") else f"only {args.only}")
    _, _, small = classify_data(cfg["rows_small"], seed=1)
    small_body = to_parquet(ours.prediction_frame({"prediction_columns": ["0", "1"]}, small))
    if want("hello"):
        attempt(results, "hello", floor.hello_world, cfg, small_body)

    def in_process() -> dict:
        _, answer, preds = classify_data(cfg["rows_big"], seed=2)
        sub = ours.prediction_frame({"prediction_columns": ["0", "1"]}, preds)
        body = to_parquet(sub)
        return floor.score_floor(
            body, answer["id"].to_numpy(), answer["label"].to_numpy(), ["0", "1"]
        )

    if want("floor_score"):
        log("floor: in-process Parquet + align + numpy log loss")
        attempt(results, "floor_score", in_process)
    if "seconds" in results.get("floor_score", {}):
        log(
            f"  floor: {cfg['rows_big']:,} rows in {results['floor_score']['seconds'] * 1e3:.1f} ms"
        )

    # ---- the original
    if args.no_peer:
        results["peer"] = {"not_run": "skipped (--no-peer)"}
    elif args.only in (
        "live",
        "first_paint",
        "first_board",
        "widget_reload",
        "cluster",
        "w1_multi",
    ):
        results["peer"] = {"not_run": f"not needed for --only {args.only}"}
    elif args.smoke and not args.peer:
        results["peer"] = {"not_run": "smoke run (add --peer to include it)"}
    elif args.smoke and not peer.STAMP.exists():
        results["peer"] = {"not_run": "smoke run: its venv is not set up (make bench sets it up)"}
    else:
        log("original: crowdsource 0.1.0 (../shared/peer)")
        t0 = time.monotonic()
        try:
            peer.setup(log)
            results["peer_setup_s"] = round(time.monotonic() - t0, 1)
            if want("peer"):
                attempt(results, "peer", peer.run, cfg, log)
        except Exception as exc:
            results["peer"] = {"not_run": f"its environment could not be set up: {exc}"}
            log(f"  original not run: {exc}")

    # ---- hosting, ours and the original's side by side (each on its own fresh server)
    if want("hosting"):
        log("hosting: ours and the original, interleaved")
        reason = (results.get("peer") or {}).get("not_run")
        attempt(results, "hosting", hosting.run, cfg, log, reason or True)

    # ---- ours
    ours_keys = ("w1", "w1_pg", "w2", "w4", "w1_multi", "w3")
    if any(want(k) for k in ours_keys):
        log("ours: crowdsource server")
        run_ours(results, cfg, deadline, want)
    # ---- PostgreSQL: one server, then two behind HAProxy (bench/cluster.py)
    if want("cluster"):
        log("cluster: one server on PostgreSQL, then two behind HAProxy")
        attempt(results, "cluster", cluster.run, cfg, log)
    # ---- issue 12: a board of 10,000 with 1,000 WebSocket watchers (bench/live.py)
    if want("live"):
        log(f"live: a board of {cfg['live_participants']:,}, {cfg['live_watchers']:,} watchers")
        attempt(results, "live", live.run, cfg, log)
    # ---- issue 12: /leaderboard's first paint on a board of 10,000 in Chromium
    if want("first_paint"):
        log(f"first paint: /leaderboard on a board of {cfg['live_participants']:,} in Chromium")
        attempt(results, "first_paint", firstpaint.run, cfg, log)
    # ---- issue 13: the first %crowdsource leaderboard of a fresh kernel
    if want("first_board"):
        log(f"first leaderboard: a fresh kernel, a board of {cfg['live_participants']:,}")
        attempt(results, "first_board", firstboard.run, cfg, log)
    # ---- issue 13: the notebook widget after a reload of JupyterLab in Chromium
    if want("widget_reload"):
        log("widget reload: a notebook showing the leaderboard widget, reloaded in Chromium")
        attempt(results, "widget_reload", widget_reload.run, cfg, log)
    results["elapsed_s"] = round(time.monotonic() - started, 1)

    text = report.render(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    raw = ROOT / "bench" / ".peer" / (f"last-{kind}.json" if kind else "last-run.json")
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps(results, indent=1, default=str))
    log("")
    log(report.table_only(results, only=args.only))
    log(f"\nwrote {out} and {raw} in {results['elapsed_s']:.0f}s")
    failed = [
        k
        for k in (
            "hello",
            "floor_score",
            "hosting",
            "w1",
            "w1_pg",
            "w1_multi",
            "w2",
            "w3",
            "w4",
            "cluster",
            "live",
            "first_paint",
            "first_board",
            "widget_reload",
        )
        if "error" in results.get(k, {})
    ] + (["server"] if "server_error" in results else [])
    if failed:
        log(f"FAILED workloads: {', '.join(failed)}")
        return 1
    return 0


def run_ours(results: dict, cfg: dict, deadline: float, want: Callable[[str], bool]) -> None:
    """Our server's workloads 1-6 (those wanted), each on the server it needs."""
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as td:
        if any(want(k) for k in ("w1", "w2", "w4")):
            srv = ours.Server(Path(td))
            try:
                srv.start()
            except Exception as exc:
                results["server_error"] = f"{type(exc).__name__}: {exc}"
                log(f"  our server did not start: {exc}")
                return
            try:
                for key, fn in (
                    ("w1", ours.submissions_per_second),
                    ("w2", ours.big_submission),
                    ("w4", ours.auto_compete),
                ):
                    if want(key):
                        attempt(results, key, fn, srv, cfg, log)
            finally:
                srv.stop()
                results["server_log_tail"] = srv.proc.tail(2000)
        if want("w1_pg"):
            log("ours: crowdsource server on PostgreSQL (a private database)")
            attempt(results, "w1_pg", on_postgres, Path(td) / "pg", cfg)
        if want("w1_multi"):
            log("ours: crowdsource server with --processes=2")
            (Path(td) / "multi").mkdir()
            multi = ours.Server(Path(td) / "multi", extra=["--processes=2"])
            try:
                multi.start()
                multi_cfg = {**cfg, "skip_json": True}
                attempt(results, "w1_multi", ours.submissions_per_second, multi, multi_cfg, log)
            finally:
                multi.stop()
        if want("w3"):
            budget = deadline - time.monotonic() - cfg["reserve_s"]
            w3dir = Path(td) / "w3"
            w3dir.mkdir()
            attempt(results, "w3", ours.leaderboard_reads, w3dir, cfg, log, budget)


def on_postgres(workdir: Path, cfg: dict) -> dict:
    """Workload 1 (Parquet bodies) on one server process over a PostgreSQL database that is
    created for the run and dropped after; not run where PostgreSQL cannot be reached."""
    import psycopg

    try:
        psycopg.connect(PG_ADMIN, connect_timeout=5).close()
    except psycopg.Error as exc:
        log(f"  not run: PostgreSQL at {PG_ADMIN} cannot be reached ({exc})")
        return {"not_run": f"PostgreSQL at {PG_ADMIN} cannot be reached"}
    workdir.mkdir()
    with postgres_database() as url:
        srv = ours.Server(workdir, db=url)
        srv.database_pids = lambda: backends(url)
        srv.start()
        try:
            return ours.submissions_per_second(srv, {**cfg, "skip_json": True}, log)
        finally:
            srv.stop()


if __name__ == "__main__":
    sys.exit(main())
