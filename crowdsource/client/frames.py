"""DataFrames on the wire: Parquet bytes, base64 Parquet in JSON, split and records forms."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "PARQUET",
    "frame_from_json",
    "frame_to_json",
    "from_parquet",
    "read_frame_file",
    "to_parquet",
    "with_id_column",
    "write_frame_file",
]

PARQUET = "application/vnd.apache.parquet"


def to_parquet(frame: pd.DataFrame) -> bytes:
    """Serialise a frame to Parquet bytes, without the pandas index (on this thread: pandas'
    own call starts a thread pool each time, which costs more than a small frame's encoding)."""
    table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue())


def from_parquet(data: bytes) -> pd.DataFrame:
    """Read Parquet bytes into a frame (the same frame as pandas.read_parquet, in half the
    time for a small one)."""
    return pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False).to_pandas()


def frame_to_json(frame: pd.DataFrame) -> dict[str, str]:
    """A frame as base64 Parquet inside a JSON body."""
    return {"format": "parquet", "data": base64.b64encode(to_parquet(frame)).decode("ascii")}


def frame_from_json(value: Any) -> pd.DataFrame:
    """Read any of the three JSON frame forms (split, records, base64 Parquet)."""
    if isinstance(value, list):
        return pd.DataFrame.from_records(value)
    if isinstance(value, dict) and value.get("format") == "parquet":
        return from_parquet(base64.b64decode(value["data"]))
    if isinstance(value, dict) and "columns" in value:
        return pd.DataFrame(value.get("data", []), columns=value["columns"])
    raise ValueError(f"not a frame: {str(value)[:80]}")


def with_id_column(frame: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """Return the frame with `id_column` as a column, moving it out of the index if needed."""
    if id_column in frame.columns:
        return frame
    if id_column in (frame.index.names or []):
        return frame.reset_index()
    return frame


def read_frame_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by its extension; Parquet by magic bytes too)."""
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or magic == b"PAR1":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def write_frame_file(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as Parquet (.parquet/.pq) or CSV (anything else)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
