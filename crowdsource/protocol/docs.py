"""The reference tables of docs/api.md, generated between `<!-- generated:NAME -->` and
`<!-- /generated -->` markers; the prose around them is left alone."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from crowdsource.protocol import errors, events, routes
from crowdsource.protocol.schema import is_record

MARKER = re.compile(r"(<!-- generated:(\w+) -->\n)(.*?)(<!-- /generated -->)", re.DOTALL)


def _answer(kind: Any) -> str:
    """A record's name as the docs show it."""
    return f"`{kind.__name__}`" if is_record(kind) else ""


def _cell(text: str) -> str:
    """Text safe in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def route_rows(route: routes.Route) -> str:
    """One route's row: method and path, who, what, answer."""
    answer = _answer(route.answer)
    if route.frame:
        answer = "a frame (Parquet with `Accept: application/vnd.apache.parquet`)"
    if route.text:
        answer = "text"
    shown = f"{route.status} {answer}".strip()
    return f"| `{route.method} {route.path}` | {route.who} | {_cell(route.summary)} | {shown} |"


def endpoints() -> str:
    """The table of every route."""
    head = "| route | who | what | answer |\n|---|---|---|---|\n"
    return head + "\n".join(route_rows(r) for r in routes.ROUTES) + "\n"


def error_table() -> str:
    """The table of error codes."""
    head = "| code | status | meaning |\n|---|---|---|\n"
    retry = " (with `Retry-After`)"
    rows = [
        f"| `{e.code}` | {e.status} | {_cell(e.meaning)}{retry if e.retry else ''} |"
        for e in errors.ERRORS
    ]
    return head + "\n".join(rows) + "\n"


def event_table() -> str:
    """The table of event types and their payloads."""
    head = "| type | data | sent |\n|---|---|---|\n"
    rows = [f"| `{e.type}` | {_answer(e.data)} | {_cell(e.meaning)} |" for e in events.EVENTS]
    return head + "\n".join(rows) + "\n"


TABLES: dict[str, Callable[[], str]] = {
    "endpoints": endpoints,
    "errors": error_table,
    "events": event_table,
}


def render(text: str) -> str:
    """docs/api.md with every generated table made anew (KeyError for an unknown name)."""
    return MARKER.sub(lambda m: m[1] + TABLES[m[2]]() + m[4], text)
