"""DataFrames on the wire, for server and client alike: raw Parquet bytes, and the JSON forms
(split, records, base64 Parquet); files on disk for the command line."""

from __future__ import annotations

import base64
import contextlib
import json
import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crowdsource.errors import BadRequest

PARQUET = "application/vnd.apache.parquet"
PARQUET_TYPES = (PARQUET, "application/x-parquet", "application/parquet")
FORM = "multipart/form-data"
FORM_PARTS = 16  # a form holds at most this many parts


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


# what pyarrow raises on Parquet whose pandas metadata (any JSON) it cannot follow
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, pa.ArrowException)


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
        except UNREADABLE as exc:
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


# ---------------------------------------------------------------- multipart/form-data


def is_form(content_type: str | None) -> bool:
    """Whether a Content-Type names a multipart/form-data body."""
    return (content_type or "").split(";")[0].strip().lower() == FORM


def _header_param(value: str, header: str, param: str) -> str | None:
    """One parameter of a header value (quoted or not), as the email package reads it."""
    message = Message()
    message[header] = value
    found = message.get_param(param, header=header)
    return found if isinstance(found, str) else None


@contextlib.contextmanager
def _view(body: Body) -> Iterator[bytes | mmap.mmap]:
    """A body to search and slice: the bytes, or a spooled file mapped into memory (so a
    large form is never held whole; only the parts sliced out of it are)."""
    if not isinstance(body, Spooled):
        yield body
        return
    try:
        handle = open(body.path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise BadRequest("the request body was lost before it was read; send it again") from exc
    with handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        yield mapped


def read_form(body: Body, content_type: str) -> dict[str, bytes]:
    """The parts of a multipart/form-data body by name (RFC 7578), each as sent."""
    boundary = _header_param(content_type, "content-type", "boundary")
    if not boundary or len(boundary) > 200:
        raise BadRequest(f"a {FORM} body needs a boundary in its Content-Type (curl -F sets it)")
    if not len(body):
        raise BadRequest(f"the {FORM} body is empty; send its parts")
    with _view(body) as data:
        return _parts(data, b"--" + boundary.encode("latin-1"))


def _parts(data: bytes | mmap.mmap, delimiter: bytes) -> dict[str, bytes]:
    """Cut a form into its parts between delimiters; say what is wrong with a malformed one."""
    malformed = f"the {FORM} body is malformed: "
    parts: dict[str, bytes] = {}
    at = data.find(delimiter)
    while at >= 0:
        at += len(delimiter)
        if data[at : at + 2] == b"--":
            return parts
        line_end = data.find(b"\r\n", at, at + 100)
        head_end = data.find(b"\r\n\r\n", line_end, line_end + 8192)
        if line_end < 0 or data[at:line_end].strip(b" \t") or head_end < 0:
            raise BadRequest(malformed + "a boundary line or a part's headers are cut short")
        headers = {}
        for line in data[line_end + 2 : head_end].decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        name = _header_param(disposition, "content-disposition", "name")
        end = data.find(b"\r\n" + delimiter, head_end + 4)
        if not name or end < 0:
            raise BadRequest(malformed + "each part needs a name and an end (curl -F does this)")
        if name in parts or len(parts) >= FORM_PARTS:
            raise BadRequest(malformed + f"part '{name}' comes twice, or over {FORM_PARTS} parts")
        parts[name] = data[head_end + 4 : end]
        at = end + 2
    raise BadRequest(malformed + "its closing boundary is missing")
