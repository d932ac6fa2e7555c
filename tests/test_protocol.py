"""The API defined once: what is generated from the protocol is what is committed, and a real
server's answers and event frames validate against the generated schemas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

import pandas as pd
import pytest
import requests
import websocket
from jsonschema import Draft202012Validator

from crowdsource import errors as server_errors
from crowdsource.client import errors as client_errors
from crowdsource.client import models
from crowdsource.protocol import ERRORS, EVENT_TYPES, ROUTES, decode, encode
from crowdsource.protocol.__main__ import REGENERATE, ROOT, stale
from crowdsource.protocol.events import RESYNC_FRAME, record_name
from crowdsource.protocol.openapi import document
from crowdsource.protocol.schema import record_schema, schemas
from crowdsource.server.app import routes as served_routes
from tests.api import Api, classify_data, events_url, probabilities, split
from tests.support import ServerProcess

DOC = document()
TS_TYPES = ROOT / "extension" / "src" / "generated" / "api.ts"


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    """A validator of one schema whose references reach the document's components."""
    root = {**schema, "components": DOC["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def problems(schema: dict[str, Any], value: Any) -> list[str]:
    """What in `value` breaks `schema`, one line each."""
    found = validator(schema).iter_errors(value)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in found]


def answer_schema(method: str, path: str, status: int) -> dict[str, Any]:
    """The schema the document gives a route's JSON answer of a status."""
    responses = DOC["paths"][path][method.lower()]["responses"]
    answer = responses.get(str(status)) or responses[f"{str(status)[0]}XX"]
    return dict(answer["content"]["application/json"]["schema"])


class Checked:
    """Requests to a real server, each answer checked against the document."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.failures: list[str] = []

    def call(self, method: str, path: str, *args: Any, **kw: Any) -> requests.Response:
        """Send a request to `path` (a template of the document) filled with `args`."""
        values = iter(args)
        url = self.api.url + re.sub(r"\{\w+\}", lambda _: str(next(values)), path)
        r = self.api.session.request(method, url, timeout=60, **kw)
        schema = answer_schema(method, path, r.status_code)
        self.failures += [
            f"{method} {path} {r.status_code}: {p}" for p in problems(schema, r.json())
        ]
        return r


def test_generated_files_are_what_the_protocol_generates() -> None:
    """OpenAPI JSON and docs/api.md's tables equal what the protocol makes now."""
    assert stale() == [], f"run `{REGENERATE}` and commit what it writes"


def test_typescript_types_are_what_openapi_typescript_generates(tmp_path: Path) -> None:
    """The committed TypeScript types are openapi-typescript's output for the document."""
    tool = ROOT / "node_modules" / ".bin" / "openapi-typescript"
    if not tool.exists() or shutil.which("node") is None:
        pytest.fail(f"openapi-typescript is not installed: run `jlpm install` in {ROOT}")
    out = tmp_path / "api.ts"
    script = json.loads((ROOT / "package.json").read_text())["scripts"]["build:schema"]
    command = next(c for c in script.split(" && ") if c.startswith("openapi-typescript")).split()
    command[command.index("--output") + 1] = str(out)
    subprocess.run([str(tool), *command[1:]], check=True, cwd=ROOT)
    assert out.read_text() == TS_TYPES.read_text(), f"run `{REGENERATE}` and commit what it writes"


class Point(TypedDict):
    """A labelled point."""

    x: int
    kind: Literal["a", "b"]
    label: NotRequired[str | None]
    near: list[Point]


def test_a_record_is_a_closed_object_schema() -> None:
    """Keys are required unless NotRequired; `X | None` is nullable; records are references."""
    assert record_schema(Point) == {
        "type": "object",
        "description": "A labelled point.",
        "properties": {
            "x": {"type": "integer"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "label": {"type": ["string", "null"]},
            "near": {"type": "array", "items": {"$ref": "#/components/schemas/Point"}},
        },
        "required": ["x", "kind", "near"],
        "additionalProperties": False,
    }
    assert list(schemas([list[Point]])) == ["Point"]


def test_every_schema_of_the_document_is_valid_json_schema() -> None:
    """Each component, and each operation's body and answers, is valid JSON Schema 2020-12."""
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for operations in DOC["paths"].values():
        for op in operations.values():
            media = [op.get("requestBody", {}).get("content", {})]
            media += [answer.get("content", {}) for answer in op["responses"].values()]
            for content in media:
                for kind in content.values():
                    Draft202012Validator.check_schema(kind["schema"])
            for param in op["parameters"]:
                Draft202012Validator.check_schema(param["schema"])
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(DOC)))
    assert refs - set(DOC["components"]["schemas"]) == set()


def test_the_events_union_is_discriminated_by_type() -> None:
    """`Event` is one frame schema per event type, told apart by `type`; TypeScript gets it."""
    union = DOC["components"]["schemas"]["Event"]
    assert list(union["discriminator"]["mapping"]) == list(EVENT_TYPES)
    ts = TS_TYPES.read_text()
    for kind in EVENT_TYPES:
        assert f'type: "{kind}";' in ts
        assert f'components["schemas"]["{record_name(kind)}"]' in ts


def test_every_served_route_is_in_the_protocol() -> None:
    """The server's route table and the protocol's routes name the same paths."""
    served = {
        re.sub(r"\(.*?\)", "{}", pattern)
        for pattern, *_ in served_routes()
        if pattern.startswith("/api/") or pattern in ("/healthz", "/readyz", "/metrics")
    }
    described = {re.sub(r"\{\w+\}", "{}", r.path) for r in ROUTES}
    assert served - described == set()


def test_every_error_code_has_its_status_and_client_class() -> None:
    """One table: the server's errors take their status from it, the client has a class for
    each of its codes, and an error known only by status maps to that status's code."""
    for cls in server_errors.CrowdsourceError.__subclasses__():
        assert cls("x", **_kw(cls)).status in {e.status for e in ERRORS}
    for error in ERRORS:
        made = client_errors.error_from_response(error.status, {"error": error.code}, "x")
        assert made.code == (error.code if error.code != "internal" else "server_error")
        assert made.retry_after is None
    made = client_errors.error_from_response(429, {"retry_after": 7}, "slow down")
    assert isinstance(made, client_errors.RateLimited) and made.retry_after == 7


def _kw(cls: type) -> dict[str, Any]:
    """The keyword arguments an error class needs."""
    if cls is server_errors.QuotaExceeded:
        return {"resets_at": pd.Timestamp.now(tz="UTC").to_pydatetime()}
    if cls in (server_errors.RateLimited, server_errors.Unavailable):
        return {"retry_after": 1.0}
    return {}


def test_frames_encode_and_decode() -> None:
    """A frame is its four fields; a client tolerates a frame without data."""
    text = encode("hello", 0, {}, "2026-12-01T00:00:00+00:00")
    assert decode(text) == json.loads(text)
    assert decode('{"type": "hello"}')["data"] == {}
    with pytest.raises(ValueError, match="type"):
        decode("[1]")


def hosted(sqlite_server: ServerProcess) -> tuple[Checked, Checked, int, pd.DataFrame]:
    """A host and a player, checked, and a competition with one scored submission."""
    host, player = Checked(Api(sqlite_server)), Checked(Api(sqlite_server))
    dataset, answer = classify_data(60)
    cid = host.api.host(type="classify", targets=["label"], dataset=dataset, answer=answer)["id"]
    predictions = probabilities(dataset["id"].to_numpy(), ("a", "b", "c"), seed=1)
    body = {"json": {"predictions": split(predictions)}}
    assert player.call("POST", "/api/v1/competitions/{cid}/submissions", cid, **body).ok
    return host, player, cid, answer


def test_every_route_family_answers_in_its_schema(sqlite_server: ServerProcess) -> None:
    """Participants, competitions, submissions, finals, teams, host tools, ensembles, errors
    and operations: each answer from a real server validates against the document."""
    host, player, cid, answer = hosted(sqlite_server)
    third = Checked(Api(sqlite_server))
    c = "/api/v1/competitions/{cid}"
    for who, method, path, kw in [
        (player, "GET", "/api/v1/participants", {}),
        (player, "GET", "/api/v1/participants/me", {}),
        (player, "GET", c, {}),
        (player, "GET", c + "/submissions", {}),
        (host, "GET", c + "/submissions", {}),
        (player, "GET", "/api/v1/submissions", {}),
        (player, "GET", c + "/final", {}),
        (player, "GET", c + "/teams/mine", {}),  # 404: in no team yet
        (host, "GET", c + "/ensemble", {}),
        (host, "PATCH", c, {"json": {"description": "edited"}}),
        (host, "GET", c + "/disqualified", {}),
        (host, "POST", c + "/answer", {"json": {"rows": split(answer)}}),
        (player, "GET", "/healthz", {}),
        (player, "GET", "/readyz", {}),
    ]:
        who.call(method, path, *([cid] if "{" in path else []), **kw)
    sid = player.api.get("/submissions").json()["submissions"][0]["id"]
    player.call("GET", "/api/v1/submissions/{sid}", sid)
    player.call("GET", "/api/v1/submissions/{sid}", 2147483647)  # 404
    player.call("PUT", c + "/final", cid, json={"submissions": [sid]})
    team = player.call("POST", c + "/teams", cid, json={"name": "Owls"}).json()
    third.call("POST", c + "/teams/join", cid, json={"code": team["code"]})
    player.call("GET", c + "/teams/mine", cid)
    host.call("POST", c + "/disqualified", cid, json={"participant": third.api.id, "reason": "x"})
    host.call("DELETE", c + "/disqualified/{pid}", cid, third.api.id)
    host.call("POST", c + "/close", cid)
    host.call("GET", c + "/ensemble", cid, params={"k": 1})
    third.call("POST", "/api/v1/participants/me/token")
    failures = host.failures + player.failures + third.failures
    assert failures == [], "\n".join(failures)


def test_refusals_and_pending_submissions_answer_in_their_schemas(
    sqlite_server: ServerProcess,
) -> None:
    """A 202 pending submission, a 429 over the daily limit (which says how long to wait, in
    its header and its body), a 401 and a delete answer as the document says."""
    host = Checked(Api(sqlite_server))
    player = Checked(Api(sqlite_server))
    dataset, answer = classify_data(40)
    cid = host.api.host(
        type="classify", targets=["label"], dataset=dataset, answer=answer, daily_limit=1
    )["id"]
    predictions = {
        "json": {"predictions": split(probabilities(dataset["id"].to_numpy(), ("a", "b", "c"), 2))}
    }
    path = "/api/v1/competitions/{cid}/submissions"
    assert (
        player.call("POST", path, cid, params={"wait": "false"}, **predictions).status_code == 202
    )
    refused = player.call("POST", path, cid, **predictions)
    assert refused.status_code == 429
    assert refused.json()["retry_after"] == int(refused.headers["Retry-After"]) > 0
    anonymous = Checked(Api(sqlite_server))
    del anonymous.api.session.headers["Authorization"]
    assert anonymous.call("GET", "/api/v1/participants/me").status_code == 401
    other = host.api.host(type="classify", targets=["label"], dataset=dataset, answer=answer)
    host.call("DELETE", "/api/v1/competitions/{cid}", other["id"])
    failures = host.failures + player.failures + anonymous.failures
    assert failures == [], "\n".join(failures)


def test_paged_lists_answer_in_their_schemas(sqlite_server: ServerProcess) -> None:
    """Competitions, leaderboards and one board, paged, validate against the document."""
    _, player, cid, _ = hosted(sqlite_server)
    player.call("GET", "/api/v1/competitions")
    player.call("GET", "/api/v1/competitions", params={"limit": 1, "offset": 0})
    player.call("GET", "/api/v1/leaderboards", params={"limit": 2})
    player.call("GET", "/api/v1/competitions/{cid}/leaderboard", cid)
    player.call("GET", "/api/v1/competitions/{cid}/leaderboard", cid, params={"around": "me"})
    assert player.failures == [], "\n".join(player.failures)


def _until(ws: Any, kind: str) -> Any:
    """Yield frames up to and including the first of type `kind`."""
    while True:
        frame = json.loads(ws.recv())
        yield frame
        if frame["type"] == kind:
            return


def event_problems(frames: list[dict[str, Any]]) -> list[str]:
    """What in each frame breaks its event type's schema."""
    out = []
    for frame in frames:
        if frame.get("type") not in EVENT_TYPES:
            out.append(f"{frame.get('type')}: not an event type of the protocol")
            continue
        schema = {"$ref": "#/components/schemas/" + record_name(frame["type"])}
        out += [f"{frame['type']}: {p}" for p in problems(schema, frame)]
    return out


def live_session(sqlite_server: ServerProcess, *, resync: bool = False) -> list[dict[str, Any]]:
    """A listener's frames over a competition's life (submission, edit, answer, close), and
    then, if asked, up to the snapshot that answers its resync request."""
    host, player = Api(sqlite_server), Api(sqlite_server)
    dataset, answer = classify_data(40)
    cid = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer)["id"]
    ws = websocket.create_connection(events_url(sqlite_server, competition=cid, token=player.token))
    try:
        ws.settimeout(15)
        hello = json.loads(ws.recv())
        assert hello["type"] == "hello"
        player.submit(cid, probabilities(dataset["id"].to_numpy(), ("a", "b", "c"), 3))
        host.session.patch(f"{host.url}/api/v1/competitions/{cid}", json={"title": "t2"})
        host.post(f"/competitions/{cid}/answer", json={"rows": split(answer)})
        host.post(f"/competitions/{cid}/close")
        frames = [hello, *_until(ws, "competition.closed")]
        if resync:
            ws.send(RESYNC_FRAME)
            frames += _until(ws, "leaderboard.snapshot")
        return frames
    finally:
        ws.close()


def test_event_frames_on_a_real_websocket_validate(sqlite_server: ServerProcess) -> None:
    """Competition and submission events a real listener receives validate against `Event`."""
    frames = [f for f in live_session(sqlite_server) if not f["type"].startswith("leaderboard.")]
    kinds = {f["type"] for f in frames}
    assert {"submission.scored", "competition.updated", "competition.closed"} <= kinds
    assert event_problems(frames) == []


def test_live_board_frames_validate(sqlite_server: ServerProcess) -> None:
    """A listener of one competition gets a snapshot, then deltas, in their schemas."""
    frames = live_session(sqlite_server, resync=True)
    kinds = [f["type"] for f in frames]
    assert kinds[1] == "leaderboard.snapshot" and "leaderboard.you" in kinds
    ws = websocket.create_connection(events_url(sqlite_server))  # every competition: no boards
    try:
        ws.settimeout(15)
        live_session(sqlite_server)
        frames += _until(ws, "leaderboard.changed")
    finally:
        ws.close()
    assert event_problems([f for f in frames if f["type"].startswith("leaderboard.")]) == []


@pytest.mark.parametrize("model", [models.Competition, models.Submission, models.Team])
def test_client_models_read_only_what_the_protocol_declares(model: type) -> None:
    """Every field a client model fills from JSON is a field of its protocol record(s)."""
    local = {"raw", "client", "_dataset"}
    assert {f.name for f in fields(model)} - local == models.wire_fields(model, model.RECORDS)


def test_standings_and_provenance_answer_in_their_schemas(sqlite_server: ServerProcess) -> None:
    """A submission's provenance and a type's standings validate against the document."""
    host, player = Checked(Api(sqlite_server)), Checked(Api(sqlite_server))
    dataset, answer = classify_data(40)
    cid = host.api.host(type="classify", targets=["label"], dataset=dataset, answer=answer)["id"]
    provenance = {
        "function": {"name": "guess", "digest": "ab" * 32, "source": None},
        "client_version": "0.2.0",
        "python": "3.11.7",
        "packages": {"pandas": "3.1.1"},
    }
    predictions = probabilities(dataset["id"].to_numpy(), ("a", "b", "c"), seed=4)
    body = {"predictions": split(predictions), "provenance": provenance}
    path = "/api/v1/competitions/{cid}/submissions"
    sid = player.call("POST", path, cid, json=body).json()["id"]
    assert player.call("GET", "/api/v1/submissions/{sid}/provenance", sid).status_code == 200
    host.call("POST", "/api/v1/competitions/{cid}/close", cid)
    assert player.call("GET", "/api/v1/standings", params={"type": "classify"}).ok
    assert host.failures + player.failures == []
