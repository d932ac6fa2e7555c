"""DataFrames on the wire, for server and client alike: raw Parquet bytes, and the JSON forms
(split, records, base64 Parquet); files on disk for the command line."""

from __future__ import annotations

import base64
import contextlib
import json
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crowdsource.errors import BadRequest, TooLarge

PARQUET = "application/vnd.apache.parquet"
PARQUET_TYPES = (PARQUET, "application/x-parquet", "application/parquet")
FORM = "multipart/form-data"
FORM_PARTS = 16  # a form holds at most this many parts
# where a Parquet submission carries its provenance (JSON): its footer's key-value metadata
PROVENANCE_KEY = b"crowdsource.provenance"


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


@dataclass(frozen=True)
class Limits:
    """The most one Parquet body may hold, checked against its footer before decoding."""

    rows: int = 50_000_000
    columns: int = 10_000
    decoded_bytes: int = 2 << 30


LIMITS = Limits()  # the server sets its configured limits in each of its processes


def set_limits(limits: Limits) -> None:
    """Use `limits` for every Parquet body this process reads from now on."""
    global LIMITS
    LIMITS = limits


# Bytes per value once decoded, by Parquet physical type (byte arrays: an offset or pointer,
# their characters counted apart from the column chunk's size).
WIDTHS = {"BOOLEAN": 1, "INT32": 4, "INT64": 8, "INT96": 12, "FLOAT": 4, "DOUBLE": 8}


def read_table(
    data: Body,
    columns: list[str] | None = None,
    *,
    check: Callable[[pq.FileMetaData], Any] | None = None,
) -> pa.Table:
    """Decode Parquet (bytes or a spooled file) to an Arrow table, after checking its footer
    against LIMITS (413 over them) and the caller's `check`; a readable error if it is not
    Parquet."""

    def source() -> Any:
        return data.path if isinstance(data, Spooled) else pa.BufferReader(data)

    try:
        parquet = pq.ParquetFile(source())
        decoded, texts = check_footer(parquet.metadata, LIMITS)
        if check is not None:
            check(parquet.metadata)
        if not texts:
            return parquet.read(columns, use_threads=False)
        declared = parquet.schema_arrow  # read again, keeping text as dictionaries until measured
        parquet = pq.ParquetFile(source(), metadata=parquet.metadata, read_dictionary=texts)
        return _expand(parquet.read(columns, use_threads=False), declared, decoded, LIMITS)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequest(f"the body is not a readable Parquet file ({exc})") from exc


# what pyarrow raises on Parquet whose pandas metadata (any JSON) it cannot follow
UNREADABLE = (ValueError, TypeError, KeyError, IndexError, AttributeError, pa.ArrowException)


def check_footer(meta: pq.FileMetaData, limits: Limits) -> tuple[int, list[str]]:
    """Refuse a file whose footer declares more rows, columns or decoded bytes than `limits`
    (nothing is decoded yet). Returns the decoded size it declares, and its dictionary-encoded
    text columns, whose decoded size only their indices tell."""
    rows, columns = meta.num_rows, meta.num_columns
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    if rows < 0 or sum(g.num_rows for g in groups) != rows:
        raise BadRequest("the body is not a readable Parquet file (its footer is inconsistent)")
    if rows > limits.rows:
        raise TooLarge(
            f"the Parquet file holds {rows:,} rows; the server reads at most {limits.rows:,} "
            "(--max-rows): send fewer rows"
        )
    if columns > limits.columns:
        raise TooLarge(
            f"the Parquet file holds {columns:,} columns; the server reads at most "
            f"{limits.columns:,} (--max-columns): send fewer columns"
        )
    decoded, worst = 0, dict[str, int]()
    for group in groups:
        for i in range(group.num_columns):
            chunk, column = group.column(i), meta.schema.column(i)
            values = max(group.num_rows, chunk.num_values)  # a list cell holds many
            width = WIDTHS.get(chunk.physical_type, 8)
            if chunk.physical_type == "FIXED_LEN_BYTE_ARRAY":
                width = max(column.length or 0, 1)
            decoded += values * width + max(chunk.total_uncompressed_size, 0)
            if chunk.physical_type == "BYTE_ARRAY" and chunk.has_dictionary_page:
                # each value may repeat the longest in the dictionary, at most its page's size
                expands = values * max(chunk.total_uncompressed_size, 0)
                worst[column.path] = worst.get(column.path, 0) + expands
    _check_decoded(decoded, limits)
    if decoded + sum(worst.values()) <= limits.decoded_bytes:
        return decoded, []  # even the worst expansion fits: read as usual
    top = set(meta.schema.to_arrow_schema().names)
    decoded += sum(w for path, w in worst.items() if path not in top)  # nested: the bound
    _check_decoded(decoded, limits)
    return decoded, sorted(path for path in worst if path in top)


def _check_decoded(decoded: int, limits: Limits) -> None:
    """Refuse a file that would decode to more than the limit."""
    if decoded > limits.decoded_bytes:
        raise TooLarge(
            f"the Parquet file would decode to about {decoded / 2**20:,.0f} MiB; the server "
            f"decodes at most {limits.decoded_bytes / 2**20:,.0f} MiB (--max-decoded-mb): "
            "send fewer rows or shorter values"
        )


def _expand(table: pa.Table, schema: pa.Schema, decoded: int, limits: Limits) -> pa.Table:
    """Text columns read as dictionaries, measured (one repeated long value can stand for
    gigabytes) and only then decoded to plain text, unless the file declares them so."""
    texts = [
        i
        for i, field in enumerate(table.schema)
        if pa.types.is_dictionary(field.type) and _is_text(field.type.value_type)
    ]
    for i in texts:
        for chunk in table.column(i).chunks:
            lengths = pc.binary_length(chunk.dictionary)
            decoded += pc.sum(pc.take(lengths, chunk.indices)).as_py() or 0
    _check_decoded(decoded, limits)
    for i in texts:
        field = schema.field(table.schema.field(i).name)
        if not pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type))
    return table


def _is_text(kind: pa.DataType) -> bool:
    """Whether values of this type have lengths of their own (text or bytes)."""
    return bool(
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def read_parquet(data: Body) -> pd.DataFrame:
    """Decode Parquet bytes to a DataFrame."""
    return read_table(data).to_pandas(use_threads=False)


def to_parquet(
    df: pd.DataFrame, *, what: str = "frame", metadata: dict[bytes, bytes] | None = None
) -> bytes:
    """Encode a frame as Parquet bytes (no index), saying which column cannot be stored; with
    `metadata` added to its footer. On this thread: pandas' own call starts a thread pool
    each time, which costs more than a small frame's encoding."""
    sink = pa.BufferOutputStream()
    try:
        table = pa.Table.from_pandas(df, preserve_index=False, nthreads=1)
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        pq.write_table(table, sink)
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
