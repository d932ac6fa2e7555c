"""DataFrames on the wire, for server and client alike: raw Parquet bytes, and the JSON forms
(split, records, base64 Parquet); files on disk for the command line."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crowdsource.errors import BadRequest

PARQUET = "application/vnd.apache.parquet"
PARQUET_TYPES = (PARQUET, "application/x-parquet", "application/parquet")


def is_parquet(content_type: str | None) -> bool:
    """Whether a Content-Type or Accept value names Parquet."""
    return bool(content_type) and any(t in str(content_type) for t in PARQUET_TYPES)


@dataclass(frozen=True)
class Spooled:
    """A request body too large to keep in memory: a file, for as long as the request lasts."""

    path: str
    size: int

    def __len__(self) -> int:
        return self.size

    def read(self) -> bytes:
        """The whole body, in memory."""
        return Path(self.path).read_bytes()


Body = bytes | Spooled


def as_bytes(body: Body) -> bytes:
    """A body in memory, reading a spooled one."""
    return body.read() if isinstance(body, Spooled) else body


def read_table(data: Body) -> pa.Table:
    """Decode Parquet (bytes or a spooled file) to an Arrow table; a readable error otherwise."""
    source = data.path if isinstance(data, Spooled) else pa.BufferReader(data)
    try:
        return pq.ParquetFile(source).read(use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequest(f"the body is not a readable Parquet file ({exc})") from exc


def read_parquet(data: Body) -> pd.DataFrame:
    """Decode Parquet bytes to a DataFrame."""
    return read_table(data).to_pandas(use_threads=False)


def to_parquet(df: pd.DataFrame, *, what: str = "frame") -> bytes:
    """Encode a frame as Parquet bytes (no index), saying which column cannot be stored. On
    this thread: pandas' own call starts a thread pool each time, which costs more than a
    small frame's encoding."""
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False, nthreads=1), sink)
    except STORE_ERRORS as exc:
        raise BadRequest(
            f"{what} cannot be stored: {_culprit(df)}. Give each column one type (numbers or "
            "text) and keep integers within 64 bits"
        ) from exc
    return sink.getvalue().to_pybytes()


STORE_ERRORS = (pa.ArrowException, OverflowError, ValueError, TypeError)


def _culprit(df: pd.DataFrame) -> str:
    """Which column Arrow cannot convert, and why."""
    for column in df.columns:
        try:
            pa.array(df[column], from_pandas=True)
        except STORE_ERRORS as exc:
            return f"column '{column}' ({str(exc).splitlines()[0][:200]})"
    return "its columns do not convert"


def decode_frame(obj: Any, *, what: str = "frame") -> pd.DataFrame:
    """Turn a JSON frame (split, records or base64 Parquet) into a DataFrame."""
    if isinstance(obj, list):
        if not all(isinstance(r, dict) for r in obj):
            raise BadRequest(f"{what}: a list of records must hold only objects")
        return pd.DataFrame.from_records(obj)
    if isinstance(obj, dict) and obj.get("format") == "parquet":
        try:
            return read_parquet(base64.b64decode(obj.get("data") or "", validate=True))
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"{what}: 'data' must be base64-encoded Parquet") from exc
    if isinstance(obj, dict) and "columns" in obj and "data" in obj:
        return _decode_split(obj, what)
    raise BadRequest(
        f'{what} must be records ([{{...}}]), split form ({{"columns": [...], "data": '
        f'[[...]]}}) or {{"format": "parquet", "data": "<base64>"}}'
    )


def _decode_split(obj: dict[str, Any], what: str) -> pd.DataFrame:
    """Build a frame from split form, checking its shape."""
    columns, data = obj["columns"], obj["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise BadRequest(f"{what}: 'columns' must be a list of column names")
    if not isinstance(data, list) or not all(
        isinstance(r, list) and len(r) == len(columns) for r in data
    ):
        raise BadRequest(f"{what}: 'data' must be a list of rows of {len(columns)} values each")
    if len(set(columns)) != len(columns):
        raise BadRequest(f"{what}: column names must be unique")
    return pd.DataFrame(data, columns=columns) if data else pd.DataFrame(columns=columns)


def frame_to_json(df: pd.DataFrame) -> dict[str, str]:
    """A frame as base64 Parquet inside a JSON body."""
    return {"format": "parquet", "data": base64.b64encode(to_parquet(df)).decode("ascii")}


def with_id_column(df: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The frame with `id_column` as a column, moved out of the index if it is there."""
    if id_column in df.columns:
        return df
    if id_column in (df.index.names or []):
        return df.reset_index()
    return df


def read_frame_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file (chosen by its extension; Parquet by magic bytes too)."""
    path = Path(path)
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if path.suffix.lower() in (".parquet", ".pq") or magic == b"PAR1":
        return pd.read_parquet(path)
    return pd.read_csv(path)


def write_frame_file(df: pd.DataFrame, path: str | Path) -> None:
    """Write a frame as Parquet (.parquet/.pq) or CSV (anything else)."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def decode_body(body: Body, content_type: str | None, *, key: str) -> pd.DataFrame:
    """Read one frame from a request body: raw Parquet, or JSON holding it under `key`."""
    if is_parquet(content_type):
        return read_parquet(body)
    obj = parse_json(as_bytes(body))
    if isinstance(obj, dict) and key in obj:
        obj = obj[key]
    return decode_frame(obj, what=key)


def parse_json(body: bytes) -> Any:
    """Parse a JSON body with a message that points at the mistake."""
    if not body:
        raise BadRequest("the request body is empty; send JSON")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON is nested too deeply; send a flat frame") from exc


def frame_json(df: pd.DataFrame) -> str:
    """Encode a frame as split-form JSON text (NaN as null, times as ISO 8601)."""
    return df.to_json(orient="split", index=False, date_format="iso")
