"""Abuse: stolen databases, forged tokens, floods, oversized and slow bodies, and participants
trying to read what is not theirs (answers, private scores before close, others' predictions)
through every route, including the events WebSocket."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from tests.support import ServerProcess

ROWS = 40
PARQUET = "application/vnd.apache.parquet"


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for a token (none for an anonymous caller)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def is_json_error(r: requests.Response, status: int, code: str | None = None) -> bool:
    """Whether a response is the documented JSON error with this status (and code)."""
    if r.status_code != status or not r.headers.get("Content-Type", "").startswith(
        "application/json"
    ):
        return False
    body = r.json()
    return (
        body.get("status") == status
        and isinstance(body.get("message"), str)
        and (code is None or body.get("error") == code)
    )


def answer_value(i: int) -> float:
    """Row i's hidden truth; its text (….3125) appears nowhere else."""
    return 7100 + i + 0.3125


def alice_value(i: int) -> float:
    """Alice's prediction for row i; its text (….375/.625/.875/.125) is hers alone."""
    return answer_value(i) + 0.0625 + (i % 5) * 0.25


def bob_value(i: int) -> float:
    """Bob's prediction for row i (….8125)."""
    return answer_value(i) + 0.5


def frame(column: str, value: Any) -> dict[str, Any]:
    """A split-form frame of `id` and one column."""
    return {"columns": ["id", column], "data": [[i, value(i)] for i in range(ROWS)]}


@dataclass
class Round:
    """A live competition with a host, two players, and what must stay hidden."""

    server: ServerProcess
    cid: int
    host: dict[str, Any]
    alice: dict[str, Any]
    bob: dict[str, Any]
    alice_subs: list[int]
    bob_subs: list[int]

    def api(self, path: str) -> str:
        """The full URL of an API path."""
        return f"{self.server.url}/api/v1{path}"

    def get(self, path: str, who: dict[str, Any] | None, **headers: str) -> requests.Response:
        """GET a path as `who` (None: anonymous)."""
        auth = bearer(who["token"] if who else None)
        return requests.get(self.api(path), headers={**auth, **headers}, timeout=30)

    def post(self, path: str, who: dict[str, Any] | None, body: Any) -> requests.Response:
        """POST JSON to a path as `who`."""
        auth = bearer(who["token"] if who else None)
        return requests.post(self.api(path), json=body, headers=auth, timeout=30)

    def private_scores(self) -> list[str]:
        """The private scores, as JSON text, read from the host's private board."""
        r = self.get(f"/competitions/{self.cid}/leaderboard?board=private", self.host)
        assert r.status_code == 200, r.text
        public = self.get(f"/competitions/{self.cid}/leaderboard", self.host).json()
        shown = {json.dumps(e["score"]) for e in public["entries"]}
        found = {json.dumps(e["score"]) for e in r.json()["entries"] if e["score"] is not None}
        return sorted(found - shown)


def hidden_texts(game: Round) -> dict[str, list[str]]:
    """Text that must not reach another participant before close."""
    return {
        "answer": [json.dumps(answer_value(i)) for i in range(ROWS)],
        "alice's predictions": [json.dumps(alice_value(i)) for i in range(ROWS)],
        "private scores": game.private_scores(),
    }


def assert_hides(text: str, secrets: dict[str, list[str]], where: str) -> None:
    """No secret text appears in `text`."""
    for what, values in secrets.items():
        leaked = [v for v in values if v in text]
        assert not leaked, f"{where} leaks {what}: {leaked[:3]}"


@pytest.fixture(scope="module")
def abuse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A private SQLite server with a 1 MiB body limit."""
    workdir = tmp_path_factory.mktemp("abuse")
    server = ServerProcess(str(workdir / "crowdsource.db"), workdir, "--max-body-mb=1")
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def game(abuse_server: ServerProcess) -> Round:
    """Host a split competition; Alice submits twice, Bob once."""
    server = abuse_server
    host, alice, bob = (server.register(n) for n in ("abuse-host", "alice", "bob"))
    spec = {
        "title": "secrets",
        "type": "regress",
        "targets": ["y"],
        "dataset": frame("x", lambda i: i * 2),
        "answer": frame("y", answer_value),
        "public_fraction": 0.5,
    }
    r = requests.post(
        server.url + "/api/v1/competitions", json=spec, headers=bearer(host["token"]), timeout=30
    )
    assert r.status_code == 201, r.text
    game = Round(server, r.json()["id"], host, alice, bob, [], [])
    path = f"/competitions/{game.cid}/submissions"
    for who, subs, value in (
        (alice, game.alice_subs, alice_value),
        (bob, game.bob_subs, bob_value),
    ):
        r = game.post(path, who, {"predictions": frame("y", value)})
        assert r.status_code == 201, r.text
        subs.append(r.json()["id"])
    r = game.post(path + "?wait=false", alice, {"predictions": frame("y", alice_value)})
    assert r.status_code == 202, r.text
    game.alice_subs.append(r.json()["id"])
    return game


# ---------------------------------------------------------------- tokens


def test_tokens_are_stored_only_as_keyed_hashes(abuse_server: ServerProcess) -> None:
    """A stolen database file holds no token, only HMAC-SHA256 digests of them."""
    people = [abuse_server.register(f"hashed-{i}") for i in range(3)]
    db = Path(abuse_server.db)
    files = [p for p in db.parent.iterdir() if p.name.startswith(db.name)]
    stored = b"".join(p.read_bytes() for p in files if p.name != db.name + ".secret")
    for person in people:
        assert person["token"].encode() not in stored
    secret = (db.parent / (db.name + ".secret")).read_bytes().strip()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        digests = dict(conn.execute("SELECT id, token_hash FROM participants").fetchall())
    for person in people:
        expected = hmac.new(secret, person["token"].encode(), hashlib.sha256).hexdigest()
        assert digests[person["id"]] == expected


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-token", "Basic YWxpY2U6c2VjcmV0", "Bearer ", "Token abc", "bearer"],
)
def test_forged_or_malformed_tokens_answer_401(
    abuse_server: ServerProcess, authorization: str
) -> None:
    """Guessed, empty and wrongly-formed credentials are refused with a JSON 401."""
    r = requests.get(
        abuse_server.url + "/api/v1/participants/me",
        headers={"Authorization": authorization},
        timeout=30,
    )
    assert is_json_error(r, 401, "unauthorized"), r.text


def test_a_token_one_character_off_is_refused(abuse_server: ServerProcess) -> None:
    """Near misses of a real token are no better than random ones."""
    token = abuse_server.register("near-miss")["token"]
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    for candidate in (forged, token + "x", token[:-1], token.upper()):
        r = requests.get(
            abuse_server.url + "/api/v1/participants/me", headers=bearer(candidate), timeout=30
        )
        assert is_json_error(r, 401, "unauthorized")


# ---------------------------------------------------------------- floods and bodies


def test_writes_are_rate_limited_per_token_with_retry_after(new_server: Any) -> None:
    """Past the burst a token's writes get 429 + Retry-After; others' writes and reads pass."""
    server = new_server(None, "--write-rate=1", "--write-burst=3")
    flooder, bystander = server.register("flooder"), server.register("bystander")
    url = server.url + "/api/v1/competitions/1/close"
    answers = [requests.post(url, headers=bearer(flooder["token"]), timeout=30) for _ in range(5)]
    assert [r.status_code for r in answers[:3]] == [404, 404, 404]
    limited = answers[3]
    assert is_json_error(limited, 429, "rate_limited"), limited.text
    wait = int(limited.headers["Retry-After"])
    assert 1 <= wait <= 2
    assert "retry in" in limited.json()["message"]
    assert requests.post(url, headers=bearer(bystander["token"]), timeout=30).status_code == 404
    reads = [
        requests.get(server.url + "/api/v1/participants/me", headers=bearer(flooder["token"]))
        for _ in range(10)
    ]
    assert {r.status_code for r in reads} == {200}
    time.sleep(wait + 0.1)
    assert requests.post(url, headers=bearer(flooder["token"]), timeout=30).status_code == 404


def test_a_body_over_the_limit_is_a_json_413(game: Round) -> None:
    """A 2 MiB submission or registration (limit 1 MiB) is refused with body_too_large."""
    big = {"predictions": {"columns": ["id", "y"], "data": [[i, 0.5] for i in range(200_000)]}}
    assert len(json.dumps(big)) > 2 * 2**20
    r = game.post(f"/competitions/{game.cid}/submissions", game.alice, big)
    assert is_json_error(r, 413, "body_too_large"), r.text[:300]
    assert "--max-body-mb" in r.json()["message"]
    r = game.post("/participants", None, {"name": "x" * (2 * 2**20)})
    assert is_json_error(r, 413, "body_too_large")
    r = game.post(f"/competitions/{game.cid}/submissions", None, big)
    assert is_json_error(r, 401, "unauthorized"), "anonymous uploads are refused before storing"


def raw_request(server: ServerProcess, head: str, timeout: float = 10.0) -> bytes:
    """Send raw request headers (no body) and read what comes back until close or timeout."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head.encode())
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and b"}" in chunk:
                    break
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_a_huge_declared_content_length_is_refused_before_the_body(game: Round) -> None:
    """A 1 TB Content-Length gets a JSON 413 at once, without the server waiting for it."""
    start = time.monotonic()
    reply = raw_request(
        game.server,
        f"POST /api/v1/competitions/{game.cid}/submissions HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {game.alice['token']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n",
    )
    assert time.monotonic() - start < 5
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:300]
    assert json.loads(body)["error"] == "body_too_large"


def slow_upload(server: ServerProcess, stop: threading.Event) -> None:
    """Declare a 60 kB body (under the 64 KiB cap) and trickle it a few bytes at a time until
    told to stop."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/participants HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"
        )
        while not stop.is_set():
            sock.sendall(b" " * 8)
            stop.wait(0.05)


def test_slow_uploads_do_not_stall_other_clients(game: Round) -> None:
    """While 8 clients trickle bodies, leaderboard reads still answer fast."""
    stop = threading.Event()
    uploads = [
        threading.Thread(target=slow_upload, args=(game.server, stop), daemon=True)
        for _ in range(8)
    ]
    for t in uploads:
        t.start()
    time.sleep(0.5)
    timings = []
    try:
        for _ in range(30):
            start = time.monotonic()
            r = game.get(f"/competitions/{game.cid}/leaderboard", None)
            timings.append(time.monotonic() - start)
            assert r.status_code == 200
            time.sleep(0.05)
    finally:
        stop.set()
        for t in uploads:
            t.join(10)
    assert max(timings) < 2.0, timings
    assert statistics.median(timings) < 0.5, timings


# ---------------------------------------------------------------- unknown routes


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/nothing"),
        ("POST", "/api/v1/nothing"),
        ("GET", "/api/v2/competitions"),
        ("GET", "/api/v1/competitions/abc"),
        ("GET", "/api/v1/competitions/1/secret"),
        ("GET", "/api/v1/submissions/-1"),
        ("GET", "/.env"),
        ("GET", "/api/v1/../../etc/passwd"),
    ],
)
def test_unknown_routes_answer_a_json_404(
    abuse_server: ServerProcess, method: str, path: str
) -> None:
    """Probing for routes that do not exist gets the documented JSON 404."""
    r = requests.request(method, abuse_server.url + path, timeout=30)
    assert is_json_error(r, 404, "not_found"), r.text[:300]


def test_unsupported_methods_answer_a_json_405(abuse_server: ServerProcess) -> None:
    """DELETE or PUT on a real route is a JSON 405."""
    for method in ("DELETE", "PUT", "PATCH"):
        r = requests.request(method, abuse_server.url + "/api/v1/competitions", timeout=30)
        assert is_json_error(r, 405, "method_not_allowed"), r.text[:300]


def test_a_plain_get_of_the_event_stream_is_a_json_error(abuse_server: ServerProcess) -> None:
    """The WebSocket route without an Upgrade answers a JSON 4xx, like every route."""
    r = requests.get(abuse_server.url + "/api/v1/events", timeout=30)
    assert 400 <= r.status_code < 500
    assert is_json_error(r, r.status_code), f"{r.status_code} {r.headers} {r.text[:200]}"


# ---------------------------------------------------------------- reading what is not yours


def test_only_the_host_reads_the_answer(game: Round) -> None:
    """Participants and anonymous callers get 403/401 from the answer route, in JSON or Parquet."""
    path = f"/competitions/{game.cid}/answer"
    for accept in ("application/json", PARQUET):
        assert is_json_error(game.get(path, game.alice, Accept=accept), 403, "forbidden")
        assert is_json_error(game.get(path, game.bob, Accept=accept), 403, "forbidden")
        assert is_json_error(game.get(path, None, Accept=accept), 401, "unauthorized")
    r = game.get(path, game.host)
    assert r.status_code == 200
    assert json.dumps(answer_value(3)) in r.text


def test_only_the_host_changes_the_answer_or_closes(game: Round) -> None:
    """A participant cannot add answer rows or close someone else's competition."""
    rows = {"rows": frame("y", lambda i: 0.0)}
    assert is_json_error(game.post(f"/competitions/{game.cid}/answer", game.bob, rows), 403)
    assert is_json_error(game.post(f"/competitions/{game.cid}/close", game.bob, None), 403)
    assert is_json_error(game.post(f"/competitions/{game.cid}/close", None, None), 401)
    assert game.get(f"/competitions/{game.cid}", None).json()["status"] == "open"
    submit = f"/competitions/{game.cid}/submissions"
    r = game.post(submit, game.host, {"predictions": frame("y", answer_value)})
    assert is_json_error(r, 403, "forbidden")


def test_an_idempotency_key_never_returns_someone_elses_submission(game: Round) -> None:
    """Bob reusing Alice's Idempotency-Key gets a submission of his own, not hers."""
    url = game.api(f"/competitions/{game.cid}/submissions")
    body = {"predictions": frame("y", lambda i: bob_value(i) + 50)}  # worse: tops no board
    key = {"Idempotency-Key": "shared-key-1"}
    first = requests.post(url, json=body, headers={**bearer(game.alice["token"]), **key})
    assert first.status_code == 201
    game.alice_subs.append(first.json()["id"])
    second = requests.post(url, json=body, headers={**bearer(game.bob["token"]), **key})
    assert second.status_code == 201, second.text
    assert second.json()["participant"]["name"] == "bob"
    assert second.json()["id"] != first.json()["id"]
    game.bob_subs.append(second.json()["id"])


def readable_routes(game: Round) -> list[str]:
    """Every GET route a participant may call about this competition."""
    cid = game.cid
    return [
        "/competitions",
        f"/competitions/{cid}",
        f"/competitions/{cid}/dataset",
        f"/competitions/{cid}/leaderboard",
        f"/competitions/{cid}/leaderboard?board=private",
        f"/competitions/{cid}/submissions",
        f"/competitions/{cid}/answer",
        "/leaderboards",
        "/submissions",
        "/participants",
        "/participants/me",
        *[f"/submissions/{sid}" for sid in game.alice_subs + game.bob_subs],
        *[f"/submissions/{sid}/predictions" for sid in game.alice_subs + game.bob_subs],
    ]


def test_no_route_shows_bob_the_answer_private_scores_or_alices_predictions(game: Round) -> None:
    """Bob and an anonymous caller read every route; no secret appears in any answer."""
    secrets = hidden_texts(game)
    assert secrets["private scores"], "the private board should differ from the public one"
    tried, routes = 0, readable_routes(game)
    for who in (game.bob, None):
        for path in routes:
            for accept in ("application/json", PARQUET):
                r = game.get(path, who, Accept=accept)
                assert r.status_code < 500, (path, r.text)
                assert_hides(r.content.decode("latin-1"), secrets, f"GET {path} as {who}")
                tried += 1
    assert tried == 4 * len(routes)


def test_private_scores_stay_null_and_the_private_board_closed_before_close(game: Round) -> None:
    """Before close the owner sees no private score; only the host sees the private board."""
    for sid in game.alice_subs:
        sub = game.get(f"/submissions/{sid}", game.alice).json()
        assert sub["private_score"] is None
        assert all(h["private_score"] is None for h in sub["history"])
    path = f"/competitions/{game.cid}/leaderboard?board=private"
    assert is_json_error(game.get(path, game.alice), 403, "forbidden")
    assert is_json_error(game.get(path, None), 403, "forbidden")
    boards = game.get("/leaderboards", None).json()["leaderboards"]
    assert {b["board"] for b in boards if b["competition_id"] == game.cid} == {"public"}


def test_predictions_are_for_their_owner_only(game: Round) -> None:
    """Bob cannot read Alice's submission's predictions, nor the host before close; Alice can."""
    sid = game.alice_subs[0]
    for accept in ("application/json", PARQUET):
        assert is_json_error(
            game.get(f"/submissions/{sid}/predictions", game.bob, Accept=accept), 404
        )
        r = game.get(f"/submissions/{sid}/predictions", game.host, Accept=accept)
        assert is_json_error(r, 403)  # the host reads predictions once the competition closes
        assert "close" in r.json()["message"]
        assert is_json_error(game.get(f"/submissions/{sid}/predictions", None, Accept=accept), 401)
    assert is_json_error(game.get(f"/submissions/{sid}", game.bob), 404)
    seen_by_host = game.get(f"/submissions/{sid}", game.host)
    assert seen_by_host.status_code == 200
    assert "predictions" not in seen_by_host.json()
    mine = game.get(f"/submissions/{sid}/predictions", game.alice)
    assert mine.status_code == 200
    assert json.dumps(alice_value(7)) in mine.text
    listed = game.get("/submissions", game.bob).json()["submissions"]
    assert sorted(s["id"] for s in listed) == sorted(game.bob_subs)


def collect_events(url: str, seconds: float) -> list[str]:
    """Messages a WebSocket receives in `seconds`."""
    ws = websocket.create_connection(url, timeout=10)
    got = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ws.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                got.append(ws.recv())
            except websocket.WebSocketTimeoutException:
                break
    finally:
        ws.close()
    return got


def test_the_event_stream_carries_no_answer_prediction_or_private_score(game: Round) -> None:
    """Bob and anonymous listeners see scoring, re-scoring and boards, but no secret."""
    secrets = hidden_texts(game)
    ws_base = game.server.url.replace("http://", "ws://") + "/api/v1/events"
    urls = [ws_base, f"{ws_base}?competition={game.cid}", f"{ws_base}?token={game.bob['token']}"]
    heard: dict[str, list[str]] = {}
    listeners = [
        threading.Thread(target=lambda u=u: heard.__setitem__(u, collect_events(u, 6.0)))
        for u in urls
    ]
    for t in listeners:
        t.start()
    time.sleep(1.0)
    path = f"/competitions/{game.cid}/submissions"
    assert game.post(path, game.alice, {"predictions": frame("y", alice_value)}).status_code == 201
    r = game.post(path + "?wait=false", game.alice, {"predictions": frame("y", alice_value)})
    assert r.status_code == 202
    r = game.post(f"/competitions/{game.cid}/answer", game.host, {"rows": frame("y", answer_value)})
    assert r.status_code == 200, r.text
    for t in listeners:
        t.join(20)
    for url, messages in heard.items():
        kinds = [json.loads(m)["type"] for m in messages]
        assert kinds[0] == "hello"
        assert {"submission.scored", "competition.resolved"} <= set(kinds)
        assert {"leaderboard.changed", "leaderboard.delta"} & set(kinds)  # unfiltered, one board
        for message in messages:
            assert_hides(message, secrets, f"event {message[:60]} on {url}")
            data = json.loads(message)["data"]
            assert data.get("private_score") is None
            assert "predictions" not in data and "answer" not in data


def test_the_event_stream_refuses_a_forged_token(game: Round) -> None:
    """A WebSocket with a wrong token is refused before it opens."""
    url = game.server.url.replace("http://", "ws://") + "/api/v1/events?token=forged"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(url, timeout=10)
    assert refused.value.status_code == 401


# ---------------------------------------------------------------- probing the leaderboard


def test_public_scores_depend_only_on_public_rows(game: Round) -> None:
    """Spoiling one row at a time moves the public score only for public rows and the
    private score only for the others: probing the public board learns nothing private."""
    host, prober = game.host, game.server.register("prober")
    spec = {
        "title": "probe",
        "type": "regress",
        "targets": ["y"],
        "dataset": frame("x", lambda i: i),
        "answer": frame("y", answer_value),
        "public_fraction": 0.5,
    }
    r = game.post("/competitions", host, spec)
    assert r.status_code == 201
    cid = r.json()["id"]
    subs = []
    for spoiled in range(ROWS):
        value = (lambda s: lambda i: answer_value(i) + (100.0 if i == s else 0.0))(spoiled)
        r = game.post(
            f"/competitions/{cid}/submissions", prober, {"predictions": frame("y", value)}
        )
        assert r.status_code == 201, r.text
        subs.append(r.json()["id"])
    assert game.post(f"/competitions/{cid}/close", host, None).status_code == 200
    public_rows = set()
    for row, sid in enumerate(subs):
        sub = game.get(f"/submissions/{sid}", prober).json()
        moved_public, moved_private = sub["public_score"] > 0, sub["private_score"] > 0
        assert moved_public != moved_private, (row, sub)
        if moved_public:
            public_rows.add(row)
    assert 0 < len(public_rows) < ROWS


def test_the_private_board_opens_to_everyone_after_close(game: Round) -> None:
    """After close, anyone reads the private board; owners see their private scores."""
    assert game.post(f"/competitions/{game.cid}/close", game.host, None).status_code == 200
    board = game.get(f"/competitions/{game.cid}/leaderboard?board=private", None)
    assert board.status_code == 200
    assert {e["participant"]["name"] for e in board.json()["entries"]} == {"alice", "bob"}
    sub = game.get(f"/submissions/{game.alice_subs[0]}", game.alice).json()
    assert sub["private_score"] is not None
    r = game.post(
        f"/competitions/{game.cid}/submissions", game.bob, {"predictions": frame("y", bob_value)}
    )
    assert is_json_error(r, 409, "closed")
