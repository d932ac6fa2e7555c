"""What the rows timed on a seeded board share: a competition whose public board holds
`live_participants` entries (written through the server's tables with
`tests.support.seed_board`), the median of a few timings, and a row against a time target."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

from bench import ours
from bench.common import classify_data, to_parquet
from tests.support import seed_board


def seeded_competition(
    srv: ours.Server, cfg: dict, workdir: Path, log: Callable, *, name: str, seed: int
) -> int:
    """Host a competition on `srv` (SQLite in `workdir`) and seed its board while it is
    stopped; returns its id, once the restarted server has built the board."""
    dataset, answer, preds = classify_data(cfg["rows_small"], seed=seed)
    slug = name.replace(" ", "-")
    comp = srv.host(srv.register(f"{slug}-host"), f"{name}: a big board", dataset, answer)
    body = to_parquet(ours.prediction_frame(comp, preds))
    srv.stop()
    seed_board(
        db=str(workdir / "bench.db"),
        competition_id=comp["id"],
        predictions=body,
        participants=cfg["live_participants"],
        prefix=f"{slug}-seeded",
    )
    srv.start()
    entries = srv.board(comp["id"])["entries"]  # the server builds the board on a first read
    if len(entries) != cfg["live_participants"]:
        raise RuntimeError(f"the board has {len(entries)} entries after seeding")
    log(f"  {name}: a board of {len(entries):,} entries")
    return int(comp["id"])


def timings(times: list[float], **more: object) -> dict:
    """The first, median and slowest of some timings (ms), with whatever else to keep."""
    return {
        **more,
        "first_ms": times[0],
        "median_ms": statistics.median(times),
        "max_ms": max(times),
    }


def timed_row(
    *, issue: str, what: str, cell: str, ms: float | None, target_ms: float, peer: str
) -> dict:
    """A table row: a median time against a target (`ms` None: not measured)."""
    return {
        "id": issue,
        "workload": what,
        "ours": cell,
        "peer": peer,
        "floor": "-",
        "ratio": "-" if ms is None else f"{ms / target_ms:.2f}x the target",
        "target": f"< {target_ms / 1000:g} s",
        "met": "-" if ms is None else ("**yes**" if ms < target_ms else "**no**"),
    }
