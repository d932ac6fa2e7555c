"""The OpenAPI 3.1 document of API v1, generated from the protocol's routes and records."""

from __future__ import annotations

from typing import Any

from crowdsource._version import __version__
from crowdsource.protocol import events, routes
from crowdsource.protocol import types as t
from crowdsource.protocol.routes import Route
from crowdsource.protocol.schema import REF, schema_of, schemas

PARQUET = "application/vnd.apache.parquet"
BINARY = {"type": "string", "format": "binary"}
ANY_FRAME = schema_of(t.AnyFrame)


def ref(name: str) -> dict[str, Any]:
    """A reference to a component schema."""
    return {"$ref": REF + name}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    """JSON content of a schema."""
    return {"application/json": {"schema": schema}}


def _frame_body(key: str) -> dict[str, Any]:
    """A body holding one frame: JSON under `key`, or raw Parquet."""
    return {
        **_json({"type": "object", "required": [key], "properties": {key: ANY_FRAME}}),
        PARQUET: {"schema": BINARY},
    }


def _hosting_body() -> dict[str, Any]:
    """The hosting body: the spec as JSON, or a form of the spec and its Parquet parts."""
    return {
        **_json(ref("CompetitionSpec")),
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["spec", "dataset"],
                "properties": {"spec": ref("CompetitionSpec"), "dataset": BINARY, "answer": BINARY},
            },
            "encoding": {"spec": {"contentType": "application/json"}},
        },
    }


BODIES = {
    routes.BODY_HOSTING: _hosting_body,
    routes.BODY_FRAME_PREDICTIONS: lambda: _frame_body("predictions"),
    routes.BODY_FRAME_ROWS: lambda: _frame_body("rows"),
}


def _content(route: Route, answer: Any) -> dict[str, Any]:
    """What a route answers, by media type."""
    if route.text:
        return {"text/plain": {"schema": {"type": "string"}}}
    if route.frame:
        return {**_json(ref("Frame")), PARQUET: {"schema": BINARY}}
    content = _json(schema_of(answer) if answer is not None else {"type": "object"})
    if route.csv:
        content["text/csv"] = {"schema": {"type": "string"}}
    return content


def operation(route: Route) -> dict[str, Any]:
    """One route as an OpenAPI operation, with the shared error answer."""
    answers = {route.status: route.answer, **route.extra}
    responses: dict[str, Any] = {
        str(status): {"description": "OK", "content": _content(route, answer)}
        for status, answer in sorted(answers.items())
    }
    if not route.text:
        responses["4XX"] = {
            "description": "A mistake to fix; the message says what",
            "content": _json(ref("ApiError")),
        }
    op: dict[str, Any] = {
        "operationId": _operation_id(route),
        "summary": route.summary,
        "parameters": [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema,
                **({"description": p.description} if p.description else {}),
            }
            for p in route.params
        ],
        "responses": responses,
    }
    if route.auth:
        op["security"] = [{"bearer": []}]
    if route.body is not None:
        content = (
            BODIES[route.body]() if isinstance(route.body, str) else _json(schema_of(route.body))
        )
        op["requestBody"] = {"required": True, "content": content}
    return op


def _operation_id(route: Route) -> str:
    """A stable name for an operation: method and path words."""
    words = [w.strip("{}").replace(".", "_").replace("-", "_") for w in route.path.split("/")]
    return "_".join([route.method.lower(), *[w for w in words if w not in ("", "api", "v1")]])


def event_schemas() -> dict[str, dict[str, Any]]:
    """Each event type's frame, and `Event`: their union, discriminated by `type`."""
    frames = {events.record_name(e.type): events.frame_schema(e) for e in events.EVENTS}
    union = {
        "description": "A frame of the event stream",
        "oneOf": [ref(name) for name in frames],
        "discriminator": {
            "propertyName": "type",
            "mapping": {e.type: REF + events.record_name(e.type) for e in events.EVENTS},
        },
    }
    return {**frames, "Event": union}


def components() -> dict[str, Any]:
    """Every named schema: records reached from routes and events, frames, the union."""
    roots: list[Any] = [r.answer for r in routes.ROUTES] + [r.body for r in routes.ROUTES]
    roots += [*route_extras(), *events.PAYLOADS.values(), events.ClientFrame]
    roots += [t.ApiError, t.AnyFrame, t.CompetitionSpec]
    found = schemas([r for r in roots if r is not None and not isinstance(r, str)])
    found.update(event_schemas())
    return dict(sorted(found.items()))


def route_extras() -> list[Any]:
    """The records of routes' other answers."""
    return [answer for r in routes.ROUTES for answer in r.extra.values()]


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes.ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crowdsource",
            "version": __version__,
            "description": "Competitions from DataFrames, scored live. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components(),
        },
    }
