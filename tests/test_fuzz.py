"""Fuzzing: Schemathesis drives every route of the server's own OpenAPI document.

Each route is called with generated valid and invalid input, anonymously, as a participant
and as a host, with path ids that hit real rows as well as random ones. The server must never
answer a 5xx, and every error must come in the documented JSON shape.

CI size: CROWDSOURCE_FUZZ_EXAMPLES examples per route, auth mode and database (default 11,
over 1,100 requests in all). A long run: CROWDSOURCE_FUZZ_EXAMPLES=500 (see SECURITY.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.support import ServerProcess, private_server

EXAMPLES = int(os.environ.get("CROWDSOURCE_FUZZ_EXAMPLES", "11"))
AUTH_MODES = ("anonymous", "participant", "host")


@dataclass
class World:
    """A live server with real rows to aim at: a host, a participant, a competition."""

    server: ServerProcess
    tokens: dict[str, str]
    ids: dict[str, int]


@dataclass
class Tally:
    """What the fuzzer sent and what it found wrong."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)

    def report(self) -> str:
        """The failures, one line each with a reproduction."""
        return "\n".join(f"{m} {p} -> {s}: {how}" for (m, p, s), how in self.failures.items())


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for a token."""
    return {"Authorization": f"Bearer {token}"}


def populate(server: ServerProcess) -> World:
    """Register a host and a participant, host a competition and submit to it once."""
    host, player = server.register("fuzz-host"), server.register("fuzz-player")
    api = server.url + "/api/v1"
    rows = range(1, 21)
    spec = {
        "title": "fuzz target",
        "type": "regress",
        "targets": ["y"],
        "dataset": {"columns": ["id", "x"], "data": [[i, i / 2] for i in rows]},
        "answer": {"columns": ["id", "y"], "data": [[i, i * 1.5] for i in rows]},
        "public_fraction": 0.5,
    }
    r = requests.post(api + "/competitions", json=spec, headers=bearer(host["token"]), timeout=30)
    r.raise_for_status()
    cid = r.json()["id"]
    predictions = {"predictions": {"columns": ["id", "y"], "data": [[i, i] for i in rows]}}
    r = requests.post(
        f"{api}/competitions/{cid}/submissions",
        json=predictions,
        headers=bearer(player["token"]),
        timeout=30,
    )
    r.raise_for_status()
    return World(
        server,
        {"participant": player["token"], "host": host["token"]},
        {"cid": cid, "sid": r.json()["id"]},
    )


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A private server per database (fuzzing creates rows others should not see)."""
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    args = ("--write-rate=100000", "--write-burst=100000", "--scoring=thread")
    with private_server(request.param, workdir, *args) as server:
        yield populate(server)


def error_shape_problem(status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an error response's shape, or None if it is the documented one."""
    if "application/json" not in content_type:
        return f"Content-Type {content_type!r}, body {body[:120]!r}"
    try:
        data = json.loads(body)
    except ValueError:
        return f"not JSON: {body[:120]!r}"
    if not isinstance(data, dict):
        return f"not an object: {body[:120]!r}"
    if not isinstance(data.get("error"), str) or not isinstance(data.get("message"), str):
        return f"no error/message strings: {body[:120]!r}"
    if data.get("status") != status:
        return f"'status' {data.get('status')!r} differs from the HTTP status"
    return None


def check(case: Any, response: Any, tally: Tally) -> None:
    """Count a response; record a 5xx or an error outside the JSON shape."""
    tally.requests += 1
    status = response.status_code
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    problem = None
    if status >= 500:
        problem = f"server error {response.content[:120]!r}"
    elif status >= 400:
        content_type = ";".join(response.headers.get("content-type", []))
        problem = error_shape_problem(status, content_type, response.content)
    if problem is not None:
        key = (case.method, case.path, status)
        tally.failures.setdefault(key, f"{problem}; e.g. {case.as_curl_command()}")


def cases(operation: Any, ids: dict[str, int]) -> st.SearchStrategy[Any]:
    """Valid and invalid requests for one route, half of them aimed at rows that exist."""
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    strategies = [operation.as_strategy(mode) for mode in modes]
    known = {p.name: ids[p.name] for p in operation.path_parameters if p.name in ids}
    if known:
        strategies += [operation.as_strategy(mode, path_parameters=known) for mode in modes]
    return st.one_of(strategies)


def fuzz_operation(operation: Any, world: World, headers: dict[str, str], tally: Tally) -> None:
    """Send EXAMPLES generated requests to one route and check every answer."""

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(operation, world.ids))
    def run(case: Any) -> None:
        """One generated request."""
        response = case.call(base_url=world.server.url, headers=headers, timeout=30)
        check(case, response, tally)
        if response.status_code == 200 and case.path == "/api/v1/participants/me/token":
            headers.update(bearer(response.json()["token"]))  # rotated: go on as the same one

    run()


def test_every_route_answers_without_5xx_in_the_json_error_shape(world: World) -> None:
    """Every route, anonymous and with a participant's and a host's token, fuzzed."""
    schema = schemathesis.openapi.from_url(world.server.url + "/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    tally = Tally()
    for mode in AUTH_MODES:
        headers = bearer(world.tokens[mode]) if mode in world.tokens else {}
        for operation in operations:
            fuzz_operation(operation, world, headers, tally)
    print(f"fuzzed {tally.requests} requests; statuses {sorted(tally.statuses.items())}")
    assert not tally.failures, f"{len(tally.failures)} bad answers:\n{tally.report()}"
    assert tally.requests >= max(500, 30 * EXAMPLES)
    assert "Traceback" not in world.server.log.read_text()
