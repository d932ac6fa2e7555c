"""Profile our server under one bench workload with py-spy, and summarise the hot frames.

    .venv/bin/pip install py-spy
    .venv/bin/python bench/profile.py submit   [--rows 1000] [--seconds 6] [--gil]
    .venv/bin/python bench/profile.py big      [--rows 1000000]
    .venv/bin/python bench/profile.py board    [--stored 10000]
    .venv/bin/python bench/profile.py compete
    .venv/bin/python bench/profile.py submit --server=--processes=2

It starts a fresh server, sets the workload up, attaches `py-spy record --subprocesses`
(raw collapsed stacks) for the measured part only, and prints the frames of crowdsource/
with the share of samples in which they appear (inclusive) and the leaf frames overall
(self). `--gil` samples only threads holding the GIL (Python CPU work); without it, waiting
threads count too (wall-clock view). The raw stacks are kept for flamegraph.pl / speedscope.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ours
from bench.common import PARQUET, ROOT, classify_data, to_parquet
from bench.loadgen import load


def summarise(raw: Path, top: int = 40) -> str:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_c[frames[-1]] += count
        for f in set(frames[1:]):
            incl[f] += count
    out = [f"{total} samples"]
    out.append("-- inclusive, crowdsource frames")
    for f, n in incl.most_common():
        if "crowdsource/" in f and len(out) < top:
            out.append(f"{n / total * 100:5.1f}%  {f}")
    out.append("-- self (leaf frames)")
    for f, n in self_c.most_common(25):
        out.append(f"{n / total * 100:5.1f}%  {f[:160]}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["submit", "big", "board", "compete"])
    ap.add_argument("--rows", type=int)
    ap.add_argument("--stored", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=6)
    ap.add_argument("--gil", action="store_true")
    ap.add_argument(
        "--server", action="append", default=[], help="a server option, e.g. --server=--processes=2"
    )
    ap.add_argument("--db", help="a database URL (e.g. postgresql+psycopg://...); default SQLite")
    ap.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    ap.add_argument("--out", default=str(ROOT / "bench" / ".peer" / "profile.txt"))
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed: .venv/bin/pip install py-spy")
        return 2
    raw = Path(args.out)
    raw.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as td:
        srv = ours.Server(Path(td), extra=args.server, db=args.db).start()
        try:
            host = srv.register("host")
            tokens = [srv.register(f"p{i}") for i in range(8)]
            rows = args.rows or (1_000_000 if args.workload == "big" else 1000)
            if args.workload == "board":
                rows = 10
            dataset, answer, preds = classify_data(rows, seed=5)
            comp = srv.host(host, "profile", dataset, answer)
            body = to_parquet(ours.prediction_frame(comp, preds))
            sub_url = f"{srv.api}/competitions/{comp['id']}/submissions"
            bearer = ("Authorization", [f"Bearer {t}" for t in tokens])
            if args.workload == "board":
                ours._fill(srv, comp["id"], tokens, body, args.stored, 300, print)
                srv.board(comp["id"])
            elif args.workload == "big":
                srv.submit(comp["id"], tokens[0], body)  # cold
            cmd = [
                spy,
                "record",
                "-p",
                str(srv.proc.pid),
                "--subprocesses",
                "-f",
                "raw",
                "-r",
                str(args.rate),
                "-o",
                str(raw),
                "-d",
                str(int(args.seconds) + 2),
            ]
            if args.gil:
                cmd.append("--gil")
            prof = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(1.0)
            t0 = time.perf_counter()
            if args.workload == "submit":
                r = load(
                    sub_url,
                    seconds=args.seconds,
                    connections=8,
                    method="POST",
                    body=body,
                    headers={"Content-Type": PARQUET},
                    rotate_header=bearer,
                )
                print(f"{r.rps:.0f} submissions/s, p50 {r.p50_ms:.1f} ms")
            elif args.workload == "board":
                r = load(
                    f"{srv.api}/competitions/{comp['id']}/leaderboard",
                    seconds=args.seconds,
                    connections=10,
                )
                print(f"{r.rps:.0f} reads/s, p50 {r.p50_ms:.2f} ms")
            elif args.workload == "big":
                n = 0
                while time.perf_counter() - t0 < args.seconds:
                    srv.submit(comp["id"], tokens[1 + n % 7], body)
                    n += 1
                print(f"{n} big submissions, {(time.perf_counter() - t0) / n:.2f} s each")
            elif args.workload == "compete":
                cfg = {"rows_small": rows, "compete_runs": 20}
                ours.auto_compete(srv, cfg, print)
            prof.wait()
        finally:
            srv.stop()
    print(summarise(raw))
    print(f"raw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
