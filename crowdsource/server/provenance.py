"""Provenance: where a submission came from (the function that made it, known by its name and
code digest; its source if the participant shared it; their client, Python and main
packages), read from the submission body and checked before anything is scored.

A JSON body carries it under "provenance"; a Parquet body (what the Python client sends) in
its footer's key-value metadata under `frames.PROVENANCE_KEY`, so the frame and where it came
from travel as one file. docs/provenance.md says why.
"""

from __future__ import annotations

import json
import mmap
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crowdsource import frames
from crowdsource.errors import BadRequest

READ = mmap.ACCESS_READ
MAX_BYTES = 256 * 1024  # the whole record as JSON: source included
MAX_TEXT = 200  # a name, a version
MAX_PACKAGES = 50
DIGEST = re.compile(r"^[0-9a-f]{8,64}$")
KEYS = ("function", "client_version", "python", "packages")
FUNCTION_KEYS = ("name", "digest", "source")


def mentioned(body: frames.Body, content_type: str | None) -> bool:
    """Whether a body may carry provenance: a cheap look before reading it (a spooled file is
    searched mapped, never read whole; a spooled Parquet file's footer is read anyway)."""
    parquet = frames.is_parquet(content_type)
    needle = frames.PROVENANCE_KEY if parquet else b'"provenance"'
    if not isinstance(body, frames.Spooled):
        return needle in body
    if parquet:
        return True
    try:
        with open(body.path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=READ) as data:
            return data.find(needle) >= 0
    except (OSError, ValueError):  # gone, or empty: the scoring says what is wrong with it
        return False


def extract(body: frames.Body, content_type: str | None) -> dict[str, Any] | None:
    """The provenance a submission body carries, checked (None if it carries none). A body
    that cannot be read at all is left to the scoring, which says what is wrong with it."""
    if frames.is_parquet(content_type):
        found = _from_parquet(body)
        if found is None:
            return None
        if len(found) > MAX_BYTES:
            raise _too_large(len(found))
        try:
            return check(json.loads(found))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BadRequest(f"provenance: the Parquet metadata is not JSON ({exc})") from exc
    try:
        obj = frames.parse_json(frames.as_bytes(body))
    except BadRequest:
        return None
    return check(obj.get("provenance")) if isinstance(obj, dict) else None


def _from_parquet(body: frames.Body) -> bytes | None:
    """The provenance text in a Parquet file's footer, if any (nothing else is decoded)."""
    source = body.path if isinstance(body, frames.Spooled) else pa.BufferReader(body)
    try:
        meta = pq.read_metadata(source).metadata or {}
    except (pa.ArrowException, OSError, ValueError):
        return None
    found = meta.get(frames.PROVENANCE_KEY)
    return None if found is None else bytes(found)


def _too_large(size: int) -> BadRequest:
    """The refusal of a record over the limit."""
    return BadRequest(
        f"provenance is {size / 1024:,.0f} KiB as JSON; at most {MAX_BYTES // 1024} KiB: "
        "share the function's source without large data in it, or do not share it"
    )


def check(value: Any) -> dict[str, Any] | None:
    """A provenance record in its one shape, or a 400 saying which field to fix."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest(f"provenance must be an object with {', '.join(KEYS)}")
    _known(value, KEYS, "provenance")
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_BYTES:
        raise _too_large(size)
    return {
        "function": _function(value.get("function")),
        "client_version": _text(value.get("client_version"), "provenance.client_version"),
        "python": _text(value.get("python"), "provenance.python"),
        "packages": _packages(value.get("packages")),
    }


def _known(value: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    """Refuse keys the record does not have."""
    extra = sorted(str(k) for k in value if k not in keys)
    if extra:
        raise BadRequest(f"{where} has unknown keys {', '.join(extra)}; it holds {', '.join(keys)}")


def _function(value: Any) -> dict[str, Any]:
    """The function: its name, code digest, and source (null unless shared)."""
    if not isinstance(value, dict):
        raise BadRequest(
            'provenance.function must be an object: {"name", "digest", "source" (or null)}'
        )
    _known(value, FUNCTION_KEYS, "provenance.function")
    name = value.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_TEXT:
        raise BadRequest(f"provenance.function.name must be text of 1 to {MAX_TEXT} characters")
    digest = value.get("digest")
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise BadRequest(
            "provenance.function.digest must be the code's sha256 digest in lowercase hex "
            "(8 to 64 characters), as the Python client computes it"
        )
    source = value.get("source")
    if source is not None and not isinstance(source, str):
        raise BadRequest("provenance.function.source must be text, or null when not shared")
    return {"name": name.strip(), "digest": digest, "source": source}


def _text(value: Any, where: str) -> str | None:
    """A short version string, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise BadRequest(f"{where} must be text of at most {MAX_TEXT} characters, or null")
    return value


def _packages(value: Any) -> dict[str, str]:
    """Package names and their versions."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_PACKAGES:
        raise BadRequest(
            f'provenance.packages must be an object of at most {MAX_PACKAGES} "name": "version"'
        )
    for name, version in value.items():
        if len(name) > MAX_TEXT or not isinstance(version, str) or len(version) > MAX_TEXT:
            raise BadRequest(
                f"provenance.packages: {str(name)[:40]!r} must map to a version as text "
                f"(names and versions at most {MAX_TEXT} characters)"
            )
    return dict(value)
