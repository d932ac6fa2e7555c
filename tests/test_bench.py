"""The benchmark keeps working: a smoke run at tiny sizes measures every workload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_bench_smoke_measures_every_workload(tmp_path: Path) -> None:
    """`bench/run.py --smoke` runs every workload against a real server and writes a table."""
    out = tmp_path / "BENCHMARKS.md"
    run = subprocess.run(
        [sys.executable, "bench/run.py", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    table = out.read_text()
    for row in (1, 2, 3, 4, 5, 6, 7, 12, 13):
        assert f"| {row} |" in table
    assert "% of SQLite" in table  # the PostgreSQL rows, measured beside SQLite's
