"""JSON Schema (2020-12, as OpenAPI 3.1 takes it) from the protocol's typed records.

A record is a TypedDict: its docstring is the schema's description, `NotRequired[...]` marks an
optional key, `X | None` a nullable value, `Literal[...]` an enum or a constant, and
`Annotated[X, keywords(...)]` adds keywords (bounds, formats). Records become `$ref`s to
`#/components/schemas/<Name>`; `schemas()` collects every record reached. Standard library
only: the JupyterLab build runs this in a bare Python."""

from __future__ import annotations

import inspect
import sys
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

if sys.version_info >= (3, 11):
    from typing import NotRequired, Required
else:  # Python 3.10: SQLAlchemy brings typing_extensions
    from typing_extensions import NotRequired, Required

REF = "#/components/schemas/"
PRIMITIVES: dict[Any, dict[str, Any]] = {
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
}
# Records that may carry keys beyond those declared (request bodies taking aliases); every
# other record is closed, so a field the server adds without declaring it fails the drift test.
OPEN: set[str] = set()


class Keywords(tuple[tuple[str, Any], ...]):
    """JSON Schema keywords to add to a type, hashable (so that it may sit in a Union)."""


def keywords(**words: Any) -> Keywords:
    """Keywords for `Annotated[X, keywords(minimum=1)]`."""
    return Keywords(sorted(words.items()))


def is_record(kind: Any) -> bool:
    """Whether `kind` is a TypedDict class."""
    return isinstance(kind, type) and typing.is_typeddict(kind)


def schema_of(kind: Any) -> dict[str, Any]:
    """The schema of a type, records as references."""
    if is_record(kind):
        return {"$ref": REF + kind.__name__}
    origin, args = get_origin(kind), get_args(kind)
    if origin is typing.Annotated:
        return {**schema_of(kind.__origin__), **dict(kind.__metadata__[0])}
    if kind in PRIMITIVES:
        return dict(PRIMITIVES[kind])
    if origin in (Required, NotRequired):
        return schema_of(args[0])
    if origin is Literal:
        typed = {"type": "string"} if all(isinstance(a, str) for a in args) else {}
        return {**typed, "const": args[0]} if len(args) == 1 else {**typed, "enum": list(args)}
    if origin is list:
        return {"type": "array", "items": schema_of(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1])}
    if origin in (Union, types.UnionType):
        return _union([schema_of(a) for a in args])
    raise TypeError(f"no JSON Schema for {kind!r}")


def _union(options: list[dict[str, Any]]) -> dict[str, Any]:
    """A union: primitive types merge into one `type` list; anything else is `anyOf`."""
    if all(set(o) == {"type"} and isinstance(o["type"], str) for o in options):
        return {"type": [o["type"] for o in options]}
    nullable = [o for o in options if o != {"type": "null"}]
    if len(nullable) == 1 and len(options) == 2 and "type" in nullable[0]:
        kind = nullable[0]["type"]
        return {**nullable[0], "type": [*([kind] if isinstance(kind, str) else kind), "null"]}
    return {"anyOf": options}


def record_schema(record: type) -> dict[str, Any]:
    """The object schema of one record."""
    hints = typing.get_type_hints(record, include_extras=True)
    # from the hints, not __required_keys__, which misses NotRequired in string annotations
    required = [k for k, v in hints.items() if get_origin(v) is not NotRequired]
    out: dict[str, Any] = {"type": "object"}
    doc = inspect.getdoc(record)
    if doc and doc != inspect.getdoc(dict):
        out["description"] = doc
    out["properties"] = {k: schema_of(v) for k, v in hints.items()}
    if required:
        out["required"] = required
    if record.__name__ not in OPEN:
        out["additionalProperties"] = False
    return out


def referenced(kind: Any) -> list[type]:
    """The records a type names, directly or inside containers."""
    if is_record(kind):
        return [kind]
    return [r for arg in get_args(kind) if not isinstance(arg, Keywords) for r in referenced(arg)]


def schemas(roots: list[Any]) -> dict[str, dict[str, Any]]:
    """Every record reachable from `roots`, by name, each once, sorted by name."""
    found: dict[str, type] = {}
    todo = [r for root in roots for r in referenced(root)]
    while todo:
        record = todo.pop()
        if record.__name__ in found:
            if found[record.__name__] is not record:
                raise TypeError(f"two records are named {record.__name__}")
            continue
        found[record.__name__] = record
        hints = typing.get_type_hints(record, include_extras=True)
        todo.extend(r for hint in hints.values() for r in referenced(hint))
    return {name: record_schema(found[name]) for name in sorted(found)}
