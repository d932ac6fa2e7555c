"""Reproduce a submission: run the function it recorded (its shared source) again on the
competition's dataset, in a fresh Python process, and compare what it returns with the
predictions stored, aligned by id. docs/provenance.md says why and what "match" means.

Run as `python -m crowdsource.client.reproduce` it is that fresh process: it loads the
source, calls the function on the competition and writes its frame to a Parquet file.
"""

from __future__ import annotations

import argparse
import ast
import os
import runpy
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from crowdsource.client.errors import CrowdsourceError

if TYPE_CHECKING:
    from crowdsource.client.client import Client

__all__ = ["NotReproducible", "Reproduction", "compare", "reproduce"]

RTOL, ATOL = 1e-6, 1e-9  # floats match within these (another BLAS may round differently)


class NotReproducible(CrowdsourceError):
    """The submission cannot be run again (no function recorded, or no source shared)."""

    code = "not_reproducible"


@dataclass(frozen=True)
class Reproduction:
    """The outcome of running a recorded function again."""

    submission_id: int
    competition_id: int
    function: str
    matched: bool
    rows: int
    mismatched_rows: int
    max_difference: float | None
    seconds: float
    message: str

    def __repr__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        return asdict(self)


def reproduce(client: Client, submission_id: int, *, timeout: float = 600.0) -> Reproduction:
    """Run submission `submission_id`'s recorded function again in a fresh process (this
    Python) on its competition's dataset; report whether its predictions match the stored."""
    record = client.provenance(submission_id)
    function = _function(record, submission_id)
    competition = client.competition(record["competition_id"])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="crowdsource-reproduce-") as folder:
        script, output = Path(folder) / "function.py", Path(folder) / "predictions.parquet"
        script.write_text(function["source"], encoding="utf-8")
        done = _run(client, competition.id, script, output, folder, timeout)
        seconds = round(time.monotonic() - started, 3)
        what = f"submission {submission_id}'s function {function['name']!r}"
        if done is not None:
            return _failed(record, function, seconds, f"{what} did not run again: {done}")
        again = pd.read_parquet(output)
    stored = client.predictions(submission_id)
    rows, mismatched, worst = compare(stored, again, id_column=competition.id_column)
    matched = mismatched == 0
    verdict = "matches" if matched else f"differs in {mismatched} of {rows} rows"
    message = (
        f"{what}, run again in a fresh process ({seconds:g} s), {verdict} the stored predictions"
    )
    if worst:
        message += f" (largest difference {worst:.3g})"
    return Reproduction(
        submission_id,
        record["competition_id"],
        function["name"],
        matched,
        rows,
        mismatched,
        worst,
        seconds,
        message,
    )


def _function(record: dict[str, Any], submission_id: int) -> dict[str, Any]:
    """The recorded function with its source, or NotReproducible saying why not."""
    origin = record.get("provenance") or {}
    function = origin.get("function")
    if not function:
        raise NotReproducible(
            f"submission {submission_id} recorded no function (it was submitted as a frame): "
            "there is nothing to run again"
        )
    if not function.get("source"):
        raise NotReproducible(
            f"submission {submission_id} recorded function {function['name']!r} (digest "
            f"{function['digest']}) but not its source: compete with share_source=True "
            "(or submit(..., function=f, share_source=True)) to make it reproducible"
        )
    return dict(function)


def _run(
    client: Client, competition_id: int, script: Path, output: Path, folder: str, timeout: float
) -> str | None:
    """Run the function in a fresh process; None if it wrote its frame, else why not."""
    command = [sys.executable, "-m", "crowdsource.client.reproduce", client.url]
    command += [str(competition_id), str(script), str(output)]
    env = {**os.environ, "CROWDSOURCE_TOKEN": client.token or ""}
    try:
        done = subprocess.run(
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"it ran for over {timeout:g} s (timeout=)"
    if done.returncode != 0 or not output.exists():
        lines = (done.stderr or done.stdout).strip().splitlines()
        return lines[-1] if lines else f"the process exited with status {done.returncode}"
    return None


def _failed(
    record: dict[str, Any], function: dict[str, Any], seconds: float, message: str
) -> Reproduction:
    """The outcome of a run that did not finish."""
    sid, cid = record["submission_id"], record["competition_id"]
    return Reproduction(sid, cid, function["name"], False, 0, 0, None, seconds, message)


def compare(
    stored: pd.DataFrame, again: pd.DataFrame, *, id_column: str
) -> tuple[int, int, float | None]:
    """Rows compared, rows that differ, and the largest numeric difference, aligned by id:
    floats within RTOL/ATOL, everything else equal; a missing id or column differs."""
    if id_column not in again.columns and id_column in (again.index.names or []):
        again = again.reset_index()
    if id_column not in again.columns:
        return len(stored), len(stored), None
    left = stored.set_index(id_column)
    right = again.drop_duplicates(id_column).set_index(id_column).reindex(left.index)
    differs = np.zeros(len(left), dtype=bool)
    worst = 0.0
    for column in left.columns:
        if column not in right.columns:
            return len(left), len(left), None
        a, b = left[column], right[column]
        if pd.api.types.is_numeric_dtype(a) and pd.api.types.is_numeric_dtype(b):
            x, y = a.to_numpy(dtype=float), b.to_numpy(dtype=float)
            close = np.isclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True)
            gaps = np.abs(x - y)[~np.isnan(x) & ~np.isnan(y)]
            worst = max(worst, float(gaps.max()) if len(gaps) else 0.0)
        else:
            close = (a.astype(str) == b.astype(str)).to_numpy() & b.notna().to_numpy()
        differs |= ~close
    return len(left), int(differs.sum()), worst or None


# ---------------------------------------------------------------- the fresh process


def _main(argv: list[str]) -> int:
    """Load the source, run its function on the competition, write the frame."""
    from crowdsource.client.client import Client
    from crowdsource.frames import with_id_column

    parser = argparse.ArgumentParser(prog="python -m crowdsource.client.reproduce")
    for name in ("url", "competition", "source", "output"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    client = Client(args.url, progress=False)
    competition = client.competition(int(args.competition))
    source = Path(args.source).read_text(encoding="utf-8")
    defined = [n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)]
    scope = runpy.run_path(args.source, run_name="__reproduce__")
    frame = scope[defined[-1]](competition)
    if not isinstance(frame, pd.DataFrame):
        print(f"the function returned {type(frame).__name__}, not a DataFrame", file=sys.stderr)
        return 1
    with_id_column(frame, competition.id_column).to_parquet(args.output, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
