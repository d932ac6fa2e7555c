"""The OpenAPI 3.1 document of API v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from crowdsource._version import __version__

MAX_ID = 2**31 - 1  # ids are the databases' INTEGER (PostgreSQL int4); larger cannot exist
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
FRAME = {
    "description": "A DataFrame: split form, records, or base64 Parquet",
    "oneOf": [
        {
            "type": "object",
            "required": ["columns", "data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array", "items": {"type": "array"}},
            },
        },
        {"type": "array", "items": {"type": "object"}},
        {
            "type": "object",
            "required": ["format", "data"],
            "properties": {"format": {"const": "parquet"}, "data": {"type": "string"}},
        },
    ],
}
ERROR = {
    "type": "object",
    "required": ["error", "message", "status"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "status": {"type": "integer"},
    },
}
COMPETITION_SPEC = {
    "type": "object",
    "required": ["title", "type", "targets", "dataset"],
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "type": {"enum": ["classify", "regress", "predict", "cluster"]},
        "metric": {"type": "string"},
        "id_column": {"type": "string"},
        "targets": {"type": "array", "items": {"type": "string"}},
        "dataset": FRAME,
        "answer": {"oneOf": [FRAME, {"type": "null"}]},
        "opens_at": {"type": ["string", "null"], "format": "date-time"},
        "closes_at": {"type": ["string", "null"], "format": "date-time"},
        "daily_limit": {"type": ["integer", "null"], "minimum": 1},
        "max_team_size": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
        "public_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "final_submissions": {"type": "integer", "minimum": 1, "maximum": 100},
        "public_scoring": {"enum": ["plain", "ladder"]},
        "ladder_step": {"type": "number", "exclusiveMinimum": 0},
    },
}
COMPETITION_EDIT = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "closes_at": {"type": ["string", "null"], "format": "date-time"},
        "daily_limit": {"type": ["integer", "null"], "minimum": 1},
    },
}
FINAL_SELECTION = {
    "type": "object",
    "required": ["submissions"],
    "properties": {"submissions": {"type": "array", "items": ID}},
}
DISQUALIFICATION = {
    "type": "object",
    "required": ["participant", "reason"],
    "properties": {
        "participant": {"oneOf": [ID, {"type": "string"}]},
        "reason": {"type": "string"},
    },
}


def _path_id(name: str) -> dict[str, Any]:
    """A numeric path parameter."""
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _op(
    summary: str,
    *,
    auth: bool = False,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    frame_out: bool = False,
    csv_out: bool = False,
    ok: int = 200,
) -> dict[str, Any]:
    """One operation with the shared error responses."""
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if csv_out:
        content["text/csv"] = {"schema": {"type": "string"}}
    if frame_out:
        content["application/vnd.apache.parquet"] = {
            "schema": {"type": "string", "format": "binary"}
        }
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            str(ok): {"description": "OK", "content": content},
            "4XX": {
                "description": "A mistake to fix; the message says what",
                "content": {"application/json": {"schema": ERROR}},
            },
        },
    }
    if auth:
        op["security"] = [{"bearer": []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON request body."""
    return {"application/json": {"schema": schema}}


def _frame_body(key: str) -> dict[str, Any]:
    """A body holding one frame: JSON under `key`, or raw Parquet."""
    return {
        "application/json": {
            "schema": {"type": "object", "required": [key], "properties": {key: FRAME}}
        },
        "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
    }


HOSTING_BODY = {
    **_json(COMPETITION_SPEC),
    "multipart/form-data": {  # the spec as JSON, its frames as Parquet parts
        "schema": {
            "type": "object",
            "required": ["spec", "dataset"],
            "properties": {
                "spec": {**COMPETITION_SPEC, "required": ["title", "type", "targets"]},
                "dataset": {"type": "string", "format": "binary"},
                "answer": {"type": "string", "format": "binary"},
            },
        },
        "encoding": {"spec": {"contentType": "application/json"}},
    },
}
CID, SID = _path_id("cid"), _path_id("sid")
READINESS = {
    "type": "object",
    "required": ["status", "problems"],
    "properties": {
        "status": {"enum": ["ready", "not ready"]},
        "problems": {
            "type": "object",
            "description": "What is not ready, by part: server, database, events, scoring",
            "additionalProperties": {"type": "string"},
        },
    },
}
PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/participants": {
        "post": _op(
            "Register; the answer holds your token, once",
            ok=201,
            body=_json(
                {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            ),
        ),
        "get": _op("List participants", auth=True),
    },
    "/api/v1/participants/me": {"get": _op("Who your token belongs to", auth=True)},
    "/api/v1/participants/me/token": {
        "post": _op("A new token for you; the one sent stops working at once", auth=True)
    },
    "/api/v1/competitions": {
        "get": _op(
            "List competitions",
            params=[
                _query("type", {"enum": ["classify", "regress", "predict", "cluster"]}),
                _query("status", {"enum": ["all", "upcoming", "open", "closed"]}),
            ],
        ),
        "post": _op("Host a competition from DataFrames", auth=True, ok=201, body=HOSTING_BODY),
    },
    "/api/v1/competitions/{cid}": {
        "get": _op("One competition", params=[CID]),
        "patch": _op(
            "Edit title, description, close time or daily limit; a later close reopens (host)",
            auth=True,
            params=[CID],
            body=_json(COMPETITION_EDIT),
        ),
        "delete": _op(
            "Delete a competition with no submissions, else archive it (host)",
            auth=True,
            params=[CID],
        ),
    },
    "/api/v1/competitions/{cid}/final": {
        "get": _op(
            "Your final submissions (selected, or your best public ones)", auth=True, params=[CID]
        ),
        "put": _op(
            "Select your final submissions, until close",
            auth=True,
            params=[CID],
            body=_json(FINAL_SELECTION),
        ),
    },
    "/api/v1/competitions/{cid}/disqualified": {
        "get": _op("Disqualified participants and why (host)", auth=True, params=[CID]),
        "post": _op(
            "Disqualify a participant with a reason (host)",
            auth=True,
            ok=201,
            params=[CID],
            body=_json(DISQUALIFICATION),
        ),
    },
    "/api/v1/competitions/{cid}/disqualified/{pid}": {
        "delete": _op("Lift a disqualification (host)", auth=True, params=[CID, _path_id("pid")])
    },
    "/api/v1/competitions/{cid}/dataset": {
        "get": _op("The dataset participants see", params=[CID], frame_out=True)
    },
    "/api/v1/competitions/{cid}/answer": {
        "get": _op("The answer rows (host only)", auth=True, params=[CID], frame_out=True),
        "post": _op(
            "Add or replace answer rows; re-scores submissions (host only)",
            auth=True,
            params=[CID],
            body=_frame_body("rows"),
        ),
    },
    "/api/v1/competitions/{cid}/close": {
        "post": _op("Close now (host only)", auth=True, params=[CID])
    },
    "/api/v1/competitions/{cid}/leaderboard": {
        "get": _op(
            "A leaderboard (private: host, or after close); CSV with Accept: text/csv",
            params=[CID, _query("board", {"enum": ["public", "private"]})],
            csv_out=True,
        )
    },
    "/api/v1/competitions/{cid}/ensemble": {
        "get": _op(
            "The crowd's ensemble: the blend of the top k entries' final submissions, scored "
            "(host only); without k, its score for every k",
            auth=True,
            params=[CID, _query("k", {"type": "integer", "minimum": 1})],
        )
    },
    "/api/v1/competitions/{cid}/submissions": {
        "get": _op(
            "Your submissions to a competition (the host: every one)", auth=True, params=[CID]
        ),
        "post": _op(
            "Submit predictions",
            auth=True,
            ok=201,
            body=_frame_body("predictions"),
            params=[
                CID,
                _query("wait", {"type": "boolean"}),
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                },
            ],
        ),
    },
    "/api/v1/competitions/{cid}/teams": {
        "post": _op(
            "Make a team; you are its first member, and the answer holds its join code",
            auth=True,
            ok=201,
            params=[CID],
            body=_json(
                {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            ),
        )
    },
    "/api/v1/competitions/{cid}/teams/join": {
        "post": _op(
            "Join a team with the code a member shared (201; 200 if you are in it already)",
            auth=True,
            ok=201,
            params=[CID],
            body=_json(
                {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}
            ),
        )
    },
    "/api/v1/competitions/{cid}/teams/mine": {
        "get": _op("Your team in a competition, with its join code", auth=True, params=[CID])
    },
    "/api/v1/submissions": {"get": _op("Your submissions", auth=True)},
    "/api/v1/submissions/{sid}": {
        "get": _op("One submission (owner or host)", auth=True, params=[SID])
    },
    "/api/v1/submissions/{sid}/predictions": {
        "get": _op("Predictions (owner; host after close)", auth=True, params=[SID], frame_out=True)
    },
    "/api/v1/submissions/{sid}/provenance": {
        "get": _op("Where it came from (owner; host after close)", auth=True, params=[SID])
    },
    "/api/v1/standings": {
        "get": _op(
            "Functions and participants ranked across the rounds of a competition type",
            params=[{**_query("type", {"type": "string"}), "required": True}],
        )
    },
    "/api/v1/leaderboards": {"get": _op("Every competition's leaderboards")},
    "/api/v1/events": {
        "get": _op(
            "WebSocket event stream (upgrade)",
            params=[_query("competition", ID), _query("token", {"type": "string"})],
        )
    },
    "/api/v1/openapi.json": {"get": _op("This document")},
    "/healthz": {"get": _op("Liveness: the process answers (asks nothing else)")},
    "/readyz": {
        "get": {
            **_op("Readiness: database, schema, event bus and scoring up, not stopping"),
            "responses": {
                "200": {"description": "Ready", "content": _json(READINESS)},
                "503": {
                    "description": "Not ready; `problems` says what",
                    "content": _json(READINESS),
                },
            },
        }
    },
    "/metrics": {
        "get": {
            **_op("Prometheus metrics of every process of this server"),
            "responses": {
                "200": {
                    "description": "Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


def document() -> dict[str, Any]:
    """The whole OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crowdsource",
            "version": __version__,
            "description": "Competitions from DataFrames, scored live. See docs/api.md.",
        },
        "paths": PATHS,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": ERROR, "Frame": FRAME},
        },
    }
