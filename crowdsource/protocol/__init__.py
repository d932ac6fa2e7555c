"""The API defined once: its records, routes, error codes and event frames. Server views and
client models are built on it; the OpenAPI document, docs/api.md's tables and the TypeScript
types are generated from it (`python -m crowdsource.protocol --help`). Standard library only."""

from __future__ import annotations

from crowdsource.protocol.errors import BY_CODE, ERRORS, STATUS, ErrorCode
from crowdsource.protocol.events import EVENT_TYPES, EVENTS, PAYLOADS, decode, encode
from crowdsource.protocol.routes import ROUTES, Route
from crowdsource.protocol.types import MAX_ID

__all__ = [
    "BY_CODE",
    "ERRORS",
    "EVENTS",
    "EVENT_TYPES",
    "MAX_ID",
    "PAYLOADS",
    "ROUTES",
    "STATUS",
    "ErrorCode",
    "Route",
    "decode",
    "encode",
]
