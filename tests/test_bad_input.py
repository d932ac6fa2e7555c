"""Bad requests: each gets a 4xx JSON error whose message says what to fix, the server keeps
answering, and nothing is stored. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests.support import ServerProcess

API = "/api/v1"
IDS = [1, 2, 3, 4, 5, 6]
LABELS = ["a", "b", "c", "a", "b", "c"]
GOOD = [0.2, 0.3, 0.5]
DROP = object()  # a spec key to leave out


# ---------------------------------------------------------------- helpers


def split(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as split-form JSON."""
    return dict(json.loads(df.to_json(orient="split", index=False)))


def later(seconds: float) -> str:
    """An ISO 8601 UTC time `seconds` from now."""
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds)).isoformat()


def wait_until(when: str) -> None:
    """Sleep until an ISO 8601 time has passed."""
    left = (datetime.fromisoformat(when) - datetime.now(timezone.utc)).total_seconds()
    time.sleep(max(0.0, left + 0.05))


def call(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """One API request; a non-bytes body is sent as JSON (NaN and Infinity allowed)."""
    sent = dict(headers or {})
    if token is not None:
        sent.setdefault("Authorization", f"Bearer {token}")
    data = body
    if body is not None and not isinstance(body, bytes):
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    return requests.request(method, server.url + API + path, data=data, headers=sent, timeout=30)


def ok(r: requests.Response, status: int = 200) -> Any:
    """The JSON of a response that must have succeeded with `status`."""
    assert r.status_code == status, r.text
    return r.json()


def competition_spec(**changes: Any) -> dict[str, Any]:
    """A valid regress competition spec, with fields changed (or dropped with DROP)."""
    rng = np.random.default_rng(0)
    dataset = pd.DataFrame({"id": IDS, "x": rng.normal(size=len(IDS))})
    answer = pd.DataFrame({"id": IDS, "y": rng.normal(size=len(IDS))})
    spec: dict[str, Any] = {"title": "regress", "type": "regress", "targets": ["y"]}
    spec.update(dataset=split(dataset), answer=split(answer))
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not DROP}


def classify_spec(metric: str, **changes: Any) -> dict[str, Any]:
    """A valid classify competition spec over IDS with classes a, b and c."""
    dataset = pd.DataFrame({"id": IDS, "x": np.arange(len(IDS), dtype=float)})
    answer = pd.DataFrame({"id": IDS, "label": LABELS})
    spec: dict[str, Any] = {"title": metric, "type": "classify", "metric": metric}
    spec.update(targets=["label"], dataset=split(dataset), answer=split(answer))
    return competition_spec(**{**spec, **changes})


def host_competition(server: ServerProcess, token: str, spec: dict[str, Any]) -> int:
    """Host a competition; returns its id."""
    return int(ok(call(server, "POST", "/competitions", token=token, body=spec), 201)["id"])


def frame(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    """A submission body in split form."""
    return {"predictions": {"columns": columns, "data": rows}}


def probs(
    change: dict[int, list[Any]] | None = None,
    *,
    drop: tuple[int, ...] = (),
    add: tuple[list[Any], ...] = (),
    columns: tuple[str, ...] = ("id", "a", "b", "c"),
) -> dict[str, Any]:
    """Probabilities for every id, with rows changed, dropped or added."""
    change = change or {}
    rows = [[i, *change.get(i, GOOD)] for i in IDS if i not in drop]
    return frame(list(columns), rows + [list(r) for r in add])


def values(change: dict[int, Any] | None = None) -> dict[str, Any]:
    """Regression predictions for every id, with some values changed."""
    change = change or {}
    return frame(["id", "y"], [[i, change.get(i, 0.5)] for i in IDS])


def assert_error(r: requests.Response, status: int, code: str, says: str) -> dict[str, Any]:
    """A JSON error of the documented shape whose message contains `says`."""
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) - {"resets_at", "retry_after"} == {"error", "message", "status"}, body
    assert (body["error"], body["status"]) == (code, status), body
    assert says.lower() in body["message"].lower(), body["message"]
    return dict(body)


# ---------------------------------------------------------------- the world the cases run in


@dataclass
class World:
    """A server with a host, two participants and a few competitions in known states."""

    server: ServerProcess
    tokens: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def get(self, path: str, who: str | None = None) -> Any:
        """GET as `who`; must succeed."""
        return ok(call(self.server, "GET", path, token=self.tokens.get(who or "")))

    def submit(self, comp: str, who: str, body: Any) -> int:
        """A good submission; returns its id."""
        r = call(self.server, "POST", f"/competitions/{self.ids[comp]}/submissions",
                 token=self.tokens[who], body=body)  # fmt: skip
        return int(ok(r, 201)["id"])


def make_world(server: ServerProcess) -> World:
    """Register host, alice and bob; host the competitions; alice submits a little."""
    w = World(server)
    tag = uuid.uuid4().hex[:12]
    for who in ("host", "alice", "bob"):
        joined = server.register(f"bad-input-{who}-{tag}")
        w.tokens[who], w.names[who], w.ids[who] = joined["token"], joined["name"], joined["id"]
    closing = later(2.5)
    specs = {
        "closed": classify_spec("logloss", closes_at=closing),
        "clf": classify_spec("logloss", daily_limit=100),
        "acc": classify_spec("accuracy"),
        "reg": competition_spec(),
        "upcoming": classify_spec("logloss", opens_at="2099-01-01T00:00:00Z"),
        "limited": classify_spec("logloss", daily_limit=1),
    }
    for name, spec in specs.items():
        w.ids[name] = host_competition(server, w.tokens["host"], spec)
    w.ids["alice_sub"] = w.submit("clf", "alice", probs())
    w.submit("limited", "alice", probs())
    w.submit("clf", "bob", probs({1: [0.1, 0.1, 0.8]}))
    wait_until(closing)
    return w


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> World:
    """The world on the session's server (SQLite or PostgreSQL)."""
    return make_world(server)


def snapshot(w: World) -> dict[str, Any]:
    """Everything a rejected request must leave as it was."""
    comps = ("closed", "clf", "acc", "reg", "upcoming", "limited")
    return {
        "submissions": {who: w.get("/submissions", who) for who in ("host", "alice", "bob")},
        "boards": {
            (c, b): w.get(f"/competitions/{w.ids[c]}/leaderboard?board={b}", "host")
            for c in comps
            for b in ("public", "private")
        },
        "competitions": [
            c for c in w.get("/competitions")["competitions"]
            if c["host"]["id"] in (w.ids["host"], w.ids["alice"], w.ids["bob"])
        ],
        "participants": w.get("/participants", "alice"),
    }  # fmt: skip


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad request and the error it must get."""

    id: str
    method: str
    path: str  # formatted with World.ids
    status: int
    code: str
    says: str  # a distinctive part of the message
    who: str | None = "alice"
    body: Any = None  # JSON-able, raw bytes, or a function of the World
    headers: dict[str, str] = field(default_factory=dict)


def sub(
    id: str,
    body: Any,
    status: int,
    code: str,
    says: str,
    comp: str = "clf",
    query: str = "",
    **kw: Any,
) -> Case:
    """A submission by alice (unless `who` says otherwise) to one of the world's competitions."""
    path = f"/competitions/{{{comp}}}/submissions{query}"
    return Case(id, "POST", path, status, code, says, body=body, **kw)


def create(id: str, body: Any, status: int, code: str, says: str, **kw: Any) -> Case:
    """A competition alice tries to host."""
    return Case(id, "POST", "/competitions", status, code, says, body=body, **kw)


PARQUET = {"Content-Type": "application/vnd.apache.parquet"}
NUL_NAME = {"name": "eve\x00"}
MISMATCHED_ANSWER = split(pd.DataFrame({"id": [1, 2, 3, 4, 5, 7], "y": [0.0] * 6}))
TARGET_SHOWN = split(pd.DataFrame({"id": IDS, "x": 1.0, "y": 2.0}))
NO_ID_COLUMN = split(pd.DataFrame({"key": IDS, "x": 1.0}))
DUPLICATE_IDS = split(pd.DataFrame({"id": [1, 1, 3, 4, 5, 6], "x": 1.0}))
MIXED_FEATURE = {"columns": ["id", "x"], "data": [[i, 1 if i % 2 else "one"] for i in IDS]}
HUGE_IDS = {"columns": ["id", "x"], "data": [[2**70 + i, 1.0] for i in IDS]}
HUGE_ANSWER = {"columns": ["id", "y"], "data": [[2**70 + i, 1.0] for i in IDS]}
ONE_CLASS = split(pd.DataFrame({"id": IDS, "label": "a"}))

# fmt: off
CASES = [
    # ---- the body itself
    sub("malformed-json", b'{"predictions": [', 400, "bad_request", "not valid JSON"),
    sub("empty-body", b"", 400, "bad_request", "body is empty"),
    sub("deeply-nested-json", b"[" * 100_000, 400, "bad_request", "JSON"),
    sub("predictions-a-number", {"predictions": 5}, 400, "bad_request", "split form"),
    sub("no-predictions-key", {"preds": []}, 400, "bad_request", "split form"),
    sub("columns-not-a-list", frame("id", []), 400, "bad_request", "'columns' must be a list"),  # type: ignore[arg-type]
    sub("ragged-rows", frame(["id", "a", "b", "c"], [[1, 0.5]]), 400, "bad_request", "4 values"),
    sub("records-not-objects", {"predictions": [1, 2]}, 400, "bad_request", "only objects"),
    sub("bad-base64", {"predictions": {"format": "parquet", "data": "!!"}}, 400, "bad_request",
        "base64"),
    sub("not-parquet", b"PAR1 not really", 400, "bad_request", "not a readable Parquet",
        headers=PARQUET),
    sub("malformed-json-no-wait", b"{", 400, "bad_request", "not valid JSON", query="?wait=false"),
    # ---- ids
    sub("missing-ids", probs(drop=(5, 6)), 422, "invalid_submission", "2 ids missing (5, 6)"),
    sub("extra-id", probs(add=([99, *GOOD],)), 422, "invalid_submission", "1 unknown ids (99)"),
    sub("duplicate-id", probs(add=([2, *GOOD],)), 422, "invalid_submission", "duplicate ids (2)"),
    sub("empty-id", probs(drop=(6,), add=([None, *GOOD],)), 422, "invalid_submission",
        "1 empty ids"),
    sub("id-wrong-type", frame(["id", "a", "b", "c"], [[f"#{i}", *GOOD] for i in IDS]), 422,
        "invalid_submission", "'id' must hold integers"),
    sub("id-fractional", probs(drop=(6,), add=([5.5, *GOOD],)), 422, "invalid_submission",
        "'id' must hold integers"),
    sub("no-id-column", probs(columns=("key", "a", "b", "c")), 422, "invalid_submission",
        "need the id column 'id'"),
    # ---- columns and values
    sub("wrong-columns", probs(columns=("id", "a", "b", "d")), 422, "invalid_submission",
        "missing c; unexpected d"),
    sub("nan", probs({2: [float("nan"), 0.5, 0.5]}), 422, "invalid_submission",
        "1 rows have empty (NaN) predictions (ids 2)"),
    sub("null", probs({3: [None, 0.5, 0.5]}), 422, "invalid_submission",
        "(NaN) predictions (ids 3)"),
    sub("inf", probs({4: [float("inf"), 0, 0]}), 422, "invalid_submission",
        "infinite or huge values"),
    sub("probability-above-1", probs({1: [1.5, 0, 0]}), 422, "invalid_submission",
        "outside [0, 1] (ids 1)"),
    sub("probability-negative", probs({6: [-0.1, 0.6, 0.5]}), 422, "invalid_submission",
        "outside [0, 1] (ids 6)"),
    sub("probabilities-not-summing-to-1", probs({5: [0.5, 0.5, 0.5]}), 422,
        "invalid_submission", "do not sum to 1 (ids 5)"),
    sub("probability-a-word", probs({1: ["high", 0.5, 0.5]}), 422, "invalid_submission",
        "must be numbers: a"),
    sub("unknown-label", frame(["id", "label"], [[i, "z" if i == 3 else "a"] for i in IDS]), 422,
        "invalid_submission", "unknown labels (z)", comp="acc"),
    sub("value-a-word", values({2: "abc"}), 422, "invalid_submission", "must be numbers: y",
        comp="reg"),
    sub("value-a-numeric-string", values({2: "2.5"}), 422, "invalid_submission",
        "must be numbers: y", comp="reg"),
    # ---- who and when
    sub("unknown-competition", probs(), 404, "not_found", "no competition 999999",
        comp="unknown"),
    sub("after-close", probs(), 409, "closed", "closed at", comp="closed"),
    sub("before-open", probs(), 409, "not_open", "opens at 2099-01-01", comp="upcoming"),
    sub("over-daily-limit", probs(), 429, "quota_exceeded", "resets at", comp="limited"),
    sub("host-submits", probs(), 403, "forbidden", "hosts cannot submit", who="host"),
    sub("no-token", probs(), 401, "unauthorized", "needs a token", who=None),
    sub("bad-token", probs(), 401, "unauthorized", "token is not valid",
        headers={"Authorization": "Bearer not-a-token"}),
    sub("basic-auth", probs(), 401, "unauthorized", "Bearer <token>",
        headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
    sub("bearer-without-token", probs(), 401, "unauthorized", "Bearer <token>",
        headers={"Authorization": "Bearer "}),
    sub("idempotency-key-too-long", probs(), 400, "bad_request", "Idempotency-Key",
        headers={"Idempotency-Key": "k" * 201}),
    # ---- hosting
    create("spec-not-an-object", [1, 2], 400, "bad_request", "send a JSON object"),
    create("unknown-type", competition_spec(type="guess"), 400, "bad_request",
        "'type' must be one of"),
    create("unknown-metric", competition_spec(metric="vibes"), 422, "invalid_competition",
        "'metric' must be one of"),
    create("metric-not-fitting-type", competition_spec(metric="logloss"), 422,
        "invalid_competition", "rmse"),
    create("target-in-dataset", competition_spec(dataset=TARGET_SHOWN), 422, "invalid_competition",
        "drop them from the dataset"),
    create("answer-ids-not-matching", competition_spec(answer=MISMATCHED_ANSWER), 422,
        "invalid_competition", "one row per dataset id"),
    create("dataset-without-id-column", competition_spec(dataset=NO_ID_COLUMN), 422,
        "invalid_competition", "no id column 'id'"),
    create("dataset-duplicate-ids", competition_spec(dataset=DUPLICATE_IDS), 422,
        "invalid_competition", "unique"),
    create("dataset-mixed-types", competition_spec(dataset=MIXED_FEATURE), 422,
        "invalid_competition", "'x'"),
    create("dataset-ids-beyond-int64", competition_spec(dataset=HUGE_IDS, answer=HUGE_ANSWER),
        422, "invalid_competition", "'id'"),
    create("answer-lacks-target", competition_spec(targets=["z"]), 422, "invalid_competition",
        "lacks column(s) z"),
    create("no-dataset", competition_spec(dataset=DROP), 400, "bad_request",
        "'dataset' is required"),
    create("public-fraction-zero", competition_spec(public_fraction=0), 400, "bad_request",
        "'public_fraction' must be a number from 0.01 to 1"),
    create("public-fraction-above-1", competition_spec(public_fraction=1.5), 400, "bad_request",
        "'public_fraction' must be a number from 0.01 to 1"),
    create("closes-before-opens", competition_spec(opens_at="2030-01-02T00:00:00Z",
        closes_at="2030-01-01T00:00:00Z"), 400, "bad_request", "'closes_at' must be after"),
    create("time-not-iso", competition_spec(closes_at="next tuesday"), 400, "bad_request",
        "not an ISO 8601 time"),
    create("classify-one-class", classify_spec("logloss", answer=ONE_CLASS), 422,
        "invalid_competition", "at least two classes"),
    create("daily-limit-a-string", competition_spec(daily_limit="5"), 400, "bad_request",
        "'daily_limit' must be a whole number"),
    create("daily-limit-zero", competition_spec(daily_limit=0), 400, "bad_request",
        "'daily_limit' must be a whole number from 1"),
    create("title-missing", competition_spec(title=DROP), 400, "bad_request", "'title'"),
    create("title-a-number", competition_spec(title=7), 400, "bad_request",
        "'title' must be a non-empty string"),
    create("title-too-long", competition_spec(title="t" * 201), 400, "bad_request",
        "at most 200"),
    create("title-with-nul", competition_spec(title="nul\x00title"), 400, "bad_request", "title"),
    create("create-without-token", competition_spec(), 401, "unauthorized", "needs a token",
        who=None),
    # ---- participants
    Case("register-no-name", "POST", "/participants", 400, "bad_request",
         "'name' must be a non-empty string", body={}),
    Case("register-name-a-number", "POST", "/participants", 400, "bad_request",
         "'name' must be a non-empty string", body={"name": 5}),
    Case("register-name-too-long", "POST", "/participants", 400, "bad_request", "at most 100",
         body={"name": "n" * 101}),
    Case("register-name-taken", "POST", "/participants", 409, "conflict", "is taken",
         body=lambda w: {"name": w.names["alice"]}),
    Case("register-name-with-nul", "POST", "/participants", 400, "bad_request", "name",
         body=NUL_NAME),
    Case("participants-without-token", "GET", "/participants", 401, "unauthorized",
         "needs a token", who=None),
    # ---- answers, boards and other people's things
    Case("private-board-before-close", "GET", "/competitions/{clf}/leaderboard?board=private",
         403, "forbidden", "shown after it closes"),
    Case("unknown-board", "GET", "/competitions/{clf}/leaderboard?board=secret", 400,
         "bad_request", "public or private"),
    Case("unknown-type-filter", "GET", "/competitions?type=guess", 400, "bad_request",
         "'type' must be one of"),
    Case("another-participants-submission", "GET", "/submissions/{alice_sub}", 404,
         "not_found", "no submission", who="bob"),
    Case("another-participants-predictions", "GET", "/submissions/{alice_sub}/predictions",
         404, "not_found", "no submission", who="bob"),
    Case("non-host-reads-answer", "GET", "/competitions/{clf}/answer", 403, "forbidden",
         "only the host"),
    Case("non-host-adds-answer", "POST", "/competitions/{clf}/answer", 403, "forbidden",
         "only the host", body={"rows": split(pd.DataFrame({"id": [1], "label": ["b"]}))}),
    Case("host-adds-answer-without-target", "POST", "/competitions/{clf}/answer", 422,
         "invalid_competition", "lack column(s) label", who="host",
         body={"rows": split(pd.DataFrame({"id": [1], "y": ["b"]}))}),
    Case("host-adds-unknown-class", "POST", "/competitions/{clf}/answer", 422,
         "invalid_competition", "unknown classes: q", who="host",
         body={"rows": split(pd.DataFrame({"id": [1], "label": ["q"]}))}),
    Case("non-host-closes", "POST", "/competitions/{clf}/close", 403, "forbidden",
         "only the host"),
    Case("competition-id-beyond-int64", "GET", "/competitions/99999999999999999999", 404,
         "not_found", "no competition"),
    Case("submission-id-beyond-int64", "GET", "/submissions/99999999999999999999", 404,
         "not_found", "no submission"),
    # ---- routes and methods
    Case("unknown-route", "GET", "/nothing/here", 404, "not_found", "no route /api/v1/nothing"),
    Case("unknown-competition-board", "GET", "/competitions/999999/leaderboard", 404,
         "not_found", "no competition 999999"),
    Case("delete-competitions", "DELETE", "/competitions", 405, "method_not_allowed",
         "DELETE is not allowed on /api/v1/competitions"),
    Case("put-me", "PUT", "/participants/me", 405, "method_not_allowed", "PUT is not allowed",
         body={"name": "x"}),
    Case("get-close", "GET", "/competitions/{clf}/close", 405, "method_not_allowed",
         "GET is not allowed"),
]
# fmt: on


def send(w: World, case: Case) -> requests.Response:
    """Make a case's request in the world."""
    body = case.body(w) if callable(case.body) else case.body
    path = case.path.format(unknown=999999, **w.ids)
    token = w.tokens.get(case.who) if case.who else None
    return call(w.server, case.method, path, token=token, body=body, headers=case.headers)


def test_table_is_big_and_unique() -> None:
    """At least 30 cases, each with its own id."""
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_request(world: World, case: Case) -> None:
    """The request gets its 4xx and a message naming the fix; the server answers; nothing stored."""
    before = snapshot(world)
    assert_error(send(world, case), case.status, case.code, case.says)
    assert world.get("/participants/me", "alice")["name"] == world.names["alice"]
    assert snapshot(world) == before


# ---------------------------------------------------------------- cases that need more


def test_over_daily_limit_says_when_it_resets(world: World) -> None:
    """429 carries Retry-After and resets_at: the next UTC midnight."""
    r = call(world.server, "POST", f"/competitions/{world.ids['limited']}/submissions",
             token=world.tokens["alice"], body=probs())  # fmt: skip
    body = assert_error(r, 429, "quota_exceeded", "resets at")
    resets = datetime.fromisoformat(body["resets_at"])
    now = datetime.now(timezone.utc)
    assert resets == datetime.combine(
        now.date() + timedelta(days=1), datetime.min.time(), now.tzinfo
    )
    assert body["resets_at"] in body["message"]
    assert abs(int(r.headers["Retry-After"]) - (resets - now).total_seconds()) < 5


@pytest.mark.parametrize(
    "title",
    ["Robert'); DROP TABLE competitions;--", "<script>alert('x')</script><b>bold</b>",
     "' OR 1=1 --", "&lt;&amp; \"quoted\" \\ back\\slash"],
    ids=["sql-drop", "html-script", "sql-or", "entities"],
)  # fmt: skip
def test_sql_and_html_in_titles_are_stored_literally(world: World, title: str) -> None:
    """Titles, descriptions and names travel as data: stored and returned byte for byte."""
    name = f"{title[:60]} {uuid.uuid4().hex[:12]}"
    person = world.server.register(name)
    assert person["name"] == name
    spec = competition_spec(title=title, description=title)
    cid = host_competition(world.server, person["token"], spec)
    shown = world.get(f"/competitions/{cid}")
    assert (shown["title"], shown["description"], shown["host"]["name"]) == (title, title, name)
    assert any(c["title"] == title for c in world.get("/competitions")["competitions"])
    assert world.get(f"/competitions/{world.ids['clf']}")["id"] == world.ids["clf"]


# ---------------------------------------------------------------- a body over the limit


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A world on a private SQLite server whose body limit is 1 MiB."""
    workdir: Path = tmp_path_factory.mktemp("bad-input-1mib")
    proc = ServerProcess(str(workdir / "crowdsource.db"), workdir, "--max-body-mb=1").start()
    yield make_world(proc)
    proc.stop()


def padded(mib: float) -> Callable[[World], Any]:
    """A valid submission padded with whitespace to `mib` MiB."""
    return lambda w: json.dumps(probs()).encode() + b" " * int(mib * 2**20)


@pytest.mark.parametrize(
    "method,path,mib",
    [("POST", "/competitions/{clf}/submissions", 2), ("POST", "/competitions/{clf}/submissions", 5),
     ("POST", "/competitions", 2), ("POST", "/competitions/{clf}/answer", 1.5)],
    ids=["submission-2mib", "submission-5mib-refused-from-header", "create-2mib", "answer-1.5mib"],
)  # fmt: skip
def test_body_over_the_limit(small_world: World, method: str, path: str, mib: float) -> None:
    """413 names the limit and how to get under it; nothing is stored."""
    who = "alice" if "submissions" in path else "host"
    case = Case("big", method, path, 413, "body_too_large", "", who=who, body=padded(mib))
    before = snapshot(small_world)
    r = send(small_world, case)
    assert_error(r, 413, "body_too_large", "over the server's 1 MiB limit")
    assert "--max-body-mb" in r.json()["message"]
    assert snapshot(small_world) == before
