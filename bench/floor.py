"""The machine's floor, measured in the same run as everything else.

- Tornado hello-world requests/s (same Tornado, same load generator and settings as our
  leaderboard reads), and the same Tornado answering a POST of a submission's body without
  scoring or storing it (same settings as our submissions);
- the in-process floor of scoring one big submission: read the Parquet bytes, align the rows
  to the answer by id, compute log loss with numpy.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import PARQUET, ROOT, Proc, free_port
from bench.loadgen import load, measured


def hello_world(cfg: dict, post_body: bytes) -> dict[str, dict]:
    """Throughput (10 connections) and latency (1 connection) of a Tornado hello-world, and
    POSTs of `post_body` per second, sequential and from 8 connections."""
    with tempfile.TemporaryDirectory(prefix="bench-hello-") as td:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = Proc(
            [sys.executable, str(ROOT / "bench" / "hello.py"), str(port)],
            Path(td) / "hello.log",
            Path(td),
        ).start(url)
        try:
            load(url, seconds=cfg["warmup_s"], connections=cfg["read_conns"])  # warm-up
            _, tp = measured(proc.pid, url, seconds=cfg["dur_read"], connections=cfg["read_conns"])
            lat = load(url, seconds=cfg["dur_read"], connections=1)
            posts = {
                key: measured(
                    proc.pid,
                    url + "post",
                    seconds=cfg["dur"],
                    connections=conns,
                    method="POST",
                    body=post_body,
                    headers={"Content-Type": PARQUET},
                )[1]
                for key, conns in (("seq", 1), ("par8", 8))
            }
        finally:
            proc.stop()
    return {"throughput": tp, "latency": lat.as_dict(), "post": posts}


def score_floor(
    sub_parquet: bytes,
    answer_ids: np.ndarray,
    answer_label: np.ndarray,
    class_columns: list[str],
    repeats: int = 5,
) -> dict:
    """Median time to read the submission Parquet, align it by id, and compute log loss.

    answer_ids / answer_label (class codes) are the truth as a server would keep it in memory,
    sorted by id once (not timed, like a server's cached answer); the submission holds `id`
    and one probability column per class, rows in any order.
    """
    order = np.argsort(answer_ids, kind="stable")
    truth_ids, truth_y = answer_ids[order], answer_label[order]
    times = []
    value = float("nan")
    for _ in range(repeats):
        t0 = time.perf_counter()
        table = pq.read_table(io.BytesIO(sub_parquet))
        sid = table.column("id").to_numpy()
        probs = np.column_stack([table.column(c).to_numpy() for c in class_columns])
        by_id = np.argsort(sid, kind="stable")  # align: sort the submission by id ...
        if not np.array_equal(sid[by_id], truth_ids):  # ... and check it matches exactly
            raise ValueError("ids missing, unknown or duplicated")
        p = np.clip(probs[by_id, truth_y], 1e-15, 1.0)
        value = float(-np.mean(np.log(p)))
        times.append(time.perf_counter() - t0)
    return {"seconds": statistics.median(times), "min_seconds": min(times), "logloss": value}
