"""The HTTP layer under hostile input: bodies bounded before they are parsed, malformed ids,
queries and times refused in the JSON error shape, connections left usable (or closed with
`Connection: close`) after a refusal, a client that retries idempotent requests once, and
timeouts and a connection cap that keep slow connections from locking the server out."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import psutil
import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from crowdsource import frames
from crowdsource.client import Client
from crowdsource.client.errors import (
    BodyTooLarge,
    ConnectionFailed,
    Forbidden,
    NotFound,
    RateLimited,
)
from crowdsource.client.errors import Unauthorized as ClientUnauthorized
from crowdsource.errors import BadRequest
from crowdsource.times import from_now, parse_duration, parse_time
from tests.support import ServerProcess, bearer, private_server, run

API = "/api/v1"
ROWS = range(1, 11)
SPEC = {
    "title": "edges",
    "type": "regress",
    "targets": ["y"],
    "dataset": {"columns": ["id", "x"], "data": [[i, i / 2] for i in ROWS]},
    "answer": {"columns": ["id", "y"], "data": [[i, i * 1.5] for i in ROWS]},
}
PREDICTIONS = {"predictions": {"columns": ["id", "y"], "data": [[i, i] for i in ROWS]}}
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class World:
    """A live server with a host, a participant, a competition and a submission."""

    server: ServerProcess
    host: str
    player: str
    cid: int
    sid: int

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to the API."""
        return requests.request(method, self.server.url + API + path, timeout=30, **kwargs)


def populate(server: ServerProcess) -> World:
    """Register a host and a player, host a competition, submit once."""
    host, player = server.register()["token"], server.register()["token"]
    url = server.url + API
    r = requests.post(url + "/competitions", json=SPEC, headers=bearer(host), timeout=30)
    cid = r.json()["id"]
    r = requests.post(
        f"{url}/competitions/{cid}/submissions",
        json=PREDICTIONS,
        headers=bearer(player),
        timeout=30,
    )
    return World(server, host, player, cid, r.json()["id"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """A private server per database: PostgreSQL's ids are 32-bit, SQLite's 64-bit."""
    workdir = tmp_path_factory.mktemp(f"edges-{request.param}")
    args = ("--write-rate=100000", "--write-burst=100000", "--scoring=thread")
    with private_server(request.param, workdir, *args) as server:
        yield populate(server)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A server that allows one write per participant, then answers 429 for a long while."""
    workdir = tmp_path_factory.mktemp("edges-strict")
    args = ("--write-rate=0.001", "--write-burst=3", "--scoring=thread", "--allow-origin=x")
    server = ServerProcess(str(workdir / "crowdsource.db"), workdir, *args).start()
    yield populate(server)
    server.stop()


def assert_error_shape(r: requests.Response | http.client.HTTPResponse, body: bytes) -> None:
    """A 4xx in the one JSON error shape; never a 5xx."""
    status = r.status
    assert status < 500, body[:300]
    if status < 400:
        return
    assert "application/json" in (r.headers.get("Content-Type") or ""), body[:300]
    data = json.loads(body)
    assert isinstance(data["error"], str) and isinstance(data["message"], str), data
    assert data["status"] == status, data


def check(r: requests.Response) -> None:
    """A requests response is not a 5xx, and any error is in the JSON shape."""
    r.status = r.status_code  # type: ignore[attr-defined]
    assert_error_shape(r, r.content)  # type: ignore[arg-type]


def raw(
    server: ServerProcess, data: bytes, timeout: float = 20.0
) -> tuple[str, dict[str, str], bytes]:
    """Send raw bytes on a new connection; the answer's status line, headers and body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_response(sock)


def read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    """Read one HTTP response with a Content-Length (or none) from a socket."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    size = int(headers.get("content-length", "0"))
    while len(body) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return lines[0], headers, body


# ---------------------------------------------------------------- bodies


def test_a_huge_registration_is_refused_before_its_body_is_read(world: World) -> None:
    """A registration declaring 100 MB gets a JSON 413 and Connection: close from its headers
    alone; the server never waits for (or holds) the body."""
    status, headers, body = raw(
        world.server,
        b"POST /api/v1/participants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100000000\r\n\r\n{"name": "',
    )
    assert status.startswith("HTTP/1.1 413"), (status, body)
    assert headers.get("connection") == "close"
    assert json.loads(body)["error"] == "body_too_large"
    assert "64 KiB" in json.loads(body)["message"]


def test_a_chunked_registration_over_the_cap_is_refused_as_it_arrives(world: World) -> None:
    """A chunked body declares no length: it is refused once past the cap, not read to its end."""
    chunk = b"%x\r\n%s\r\n" % (16384, b" " * 16384)
    head = b"POST /api/v1/participants HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with socket.create_connection(("127.0.0.1", world.server.port), timeout=20) as sock:
        sock.sendall(head + chunk * 6)  # 96 KiB, and the body never ends
        status, headers, body = read_response(sock)
    assert status.startswith("HTTP/1.1 413"), (status, body)
    assert headers.get("connection") == "close"


class StubParticipants:
    """Just enough of the participant manager for registration, which parses JSON."""

    async def register(self, name: Any) -> dict[str, Any]:
        """Echo the name."""
        return {"name": name}


class StubManagers:
    """The settings the handlers read, with only the participant manager."""

    def settings(self) -> dict[str, Any]:
        """As Managers.settings()."""
        return {"participant_manager": StubParticipants(), "inline_bytes": 1 << 30}


def test_large_json_is_parsed_on_a_thread_small_json_inline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large JSON body (an operator raised --max-json-kb) is parsed off the event loop, so
    other requests go on meanwhile; a small one inline."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    from crowdsource.server.app import make_app
    from crowdsource.server.ratelimit import RateLimiter

    threads: list[str] = []
    parse = frames.parse_json
    monkeypatch.setattr(
        frames,
        "parse_json",
        lambda b: (threads.append(threading.current_thread().name), parse(b))[1],
    )

    loop_thread: list[str] = []

    async def scenario() -> list[int]:
        loop_thread.append(threading.current_thread().name)
        app = make_app(
            StubManagers(),  # type: ignore[arg-type]
            allow_origins=[],
            max_body_size=2**24,
            max_json_size=2**20,
            limiter=RateLimiter(rate=0, burst=1),
        )
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(app)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        client = AsyncHTTPClient()
        codes = []
        for size in (10, 200_000):
            body = json.dumps({"name": "ann", "pad": "x" * size}).encode()
            r = await client.fetch(
                f"http://127.0.0.1:{port}{API}/participants",
                method="POST",
                body=body,
                raise_error=False,
            )
            codes.append(r.code)
        server.stop()
        return codes

    assert run(scenario()) == [201, 201]  # on a loop of its own, in a thread of its own
    assert threads[0] == loop_thread[0]
    assert threads[1].startswith("crowdsource-json"), threads


# ---------------------------------------------------------------- ids, queries, times

ID_ROUTES = [
    ("GET", "/competitions/{}"),
    ("GET", "/competitions/{}/dataset"),
    ("GET", "/competitions/{}/answer"),
    ("POST", "/competitions/{}/answer"),
    ("POST", "/competitions/{}/close"),
    ("GET", "/competitions/{}/leaderboard"),
    ("GET", "/competitions/{}/submissions"),
    ("POST", "/competitions/{}/submissions"),
    ("GET", "/submissions/{}"),
    ("GET", "/submissions/{}/predictions"),
]
BAD_IDS = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.integers(min_value=2**31 - 2, max_value=2**63 + 2).map(str),
    st.text("0123456789", min_size=11, max_size=6000),
    st.text("\u0660\u0661\u0662\u09e6\u09e70123456789", min_size=1, max_size=5),  # \d matches
    st.text(min_size=1, max_size=40).filter(lambda t: t not in (".", "..")),
)
QUERY_VALUES = st.one_of(
    st.text(max_size=40),
    st.text("0123456789", min_size=1, max_size=6000),
    st.sampled_from(["", "public", "private", "all", "open", "regress", "true", "no", "-1"]),
)


@FAST
@given(route=st.sampled_from(ID_ROUTES), value=BAD_IDS, who=st.sampled_from(["anon", "host"]))
@example(route=("GET", "/competitions/{}"), value="9" * 5000, who="anon")
@example(route=("GET", "/submissions/{}"), value=str(2**31), who="host")
def test_any_path_id_is_answered_below_500(
    world: World, route: tuple[str, str], value: str, who: str
) -> None:
    """Every id-taking route answers any segment with a 2xx or a JSON 4xx."""
    method, template = route
    headers = bearer(world.host) if who == "host" else {}
    body = json.dumps(PREDICTIONS) if method == "POST" else None
    check(world.call(method, template.format(quote(value, safe="")), headers=headers, data=body))


@FAST
@given(
    name=st.sampled_from(["type", "status", "board", "wait"]),
    value=QUERY_VALUES,
)
@example(name="wait", value="maybe")
def test_any_query_value_is_answered_below_500(world: World, name: str, value: str) -> None:
    """Filters and flags answer any value with a 2xx or a JSON 4xx."""
    query = f"?{name}={quote(value, safe='')}"
    check(world.call("GET", f"/competitions{query}"))
    check(world.call("GET", f"/competitions/{world.cid}/leaderboard{query}"))
    r = world.call(
        "POST",
        f"/competitions/{world.cid}/submissions{query}",
        headers=bearer(world.player),
        json={"predictions": "not a frame"},
    )
    check(r)


HEADER_VALUES = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300).map(
    str.lstrip  # requests refuses to send a value with leading spaces
)


@FAST
@given(
    name=st.sampled_from(["Authorization", "Content-Type", "Accept", "Idempotency-Key"]),
    value=HEADER_VALUES,
    route=st.sampled_from(
        [
            ("GET", "/competitions/{cid}/dataset"),
            *[
                ("POST", p)
                for p in (
                    "/competitions/{cid}/submissions",
                    "/competitions/{cid}/answer",
                    "/participants",
                )
            ],
        ]
    ),
)
def test_any_header_value_is_answered_below_500(
    world: World, name: str, value: str, route: tuple[str, str]
) -> None:
    """Tokens, content types and keys of any shape get a 2xx or a JSON 4xx."""
    method, path = route
    headers = {"Authorization": f"Bearer {world.player}", name: value}
    body = json.dumps(PREDICTIONS) if method == "POST" else None
    check(world.call(method, path.format(cid=world.cid), headers=headers, data=body))


def websocket_handshake(server: ServerProcess, query: str) -> tuple[str, dict[str, str], bytes]:
    """Open the event stream with a query; the server's first answer."""
    head = (
        f"GET {API}/events?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    return raw(server, head.encode())


@FAST
@given(value=st.one_of(BAD_IDS, st.integers(1, 2**31 - 1).map(str)))
@example(value="9" * 5000)
@example(value=str(2**31))
def test_any_event_stream_competition_is_answered_below_500(world: World, value: str) -> None:
    """`?competition=` on the WebSocket: a valid id upgrades, anything else is a JSON 400."""
    status, _, body = websocket_handshake(world.server, f"competition={quote(value)}")
    code = int(status.split()[1])
    assert code in (101, 400), (status, body[:200])
    if code == 400:
        data = json.loads(body)
        assert data["status"] == 400 and data["error"] == "bad_request", data


@pytest.mark.parametrize(
    "drop", ["Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin"]
)
def test_a_bad_websocket_handshake_is_a_json_error(strict: World, drop: str) -> None:
    """A handshake missing a part (or from a foreign origin) is refused in the JSON shape."""
    headers = {
        "Host": "127.0.0.1",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Origin": "http://127.0.0.1",
    }
    if drop == "Origin":
        headers["Origin"] = "https://elsewhere.example"
    else:
        headers.pop(drop)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    status, response_headers, body = raw(
        strict.server, f"GET {API}/events HTTP/1.1\r\n{head}\r\n".encode()
    )
    code = int(status.split()[1])
    assert code in (400, 403), (status, body)
    assert "application/json" in response_headers["content-type"]
    assert json.loads(body)["status"] == code


def iso_with_offset(when: datetime, minutes: int) -> str:
    """A naive time written with a UTC offset of so many minutes."""
    sign = "-" if minutes < 0 else "+"
    return f"{when.isoformat()}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


TIMES = st.one_of(
    st.builds(
        iso_with_offset,
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
        st.integers(-14 * 60 + 1, 14 * 60 - 1),
    ),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["+99999999d", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "now"]),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)


@FAST
@given(opens=TIMES, closes=TIMES)
@example(opens=None, closes="9999-12-31T23:59:59-14:00")
@example(opens="0001-01-01T00:00:00+14:00", closes=None)
@example(opens="9999-12-31T23:59:59-14:00", closes=None)
def test_any_time_field_is_answered_below_500(world: World, opens: Any, closes: Any) -> None:
    """opens_at / closes_at at the calendar's edges, with offsets, or not times at all: a 201
    or a JSON 400, and the server goes on answering."""
    spec = {**SPEC, "opens_at": opens, "closes_at": closes}
    r = world.call("POST", "/competitions", json=spec, headers=bearer(world.host))
    check(r)
    if r.status_code == 201:
        check(world.call("GET", f"/competitions/{r.json()['id']}"))
        check(world.call("GET", f"/competitions/{r.json()['id']}/leaderboard"))


@given(text=st.one_of(st.text(max_size=40), TIMES.filter(lambda t: isinstance(t, str))))
def test_parse_time_gives_utc_in_range_or_bad_request(text: str) -> None:
    """The one time parser either returns an aware UTC time within years 1-9999 with a day to
    spare, or a BadRequest; never another exception."""
    try:
        parsed = parse_time(text, field="closes_at")
    except BadRequest as exc:
        assert "closes_at" in exc.message
        return
    assert parsed is not None and parsed.utcoffset() == timedelta(0)
    assert parsed + timedelta(days=1) > parsed - timedelta(days=1)  # neither overflows


@given(text=st.from_regex(r"\+?[0-9]{1,400}(\.[0-9]{1,5})?[smhd]", fullmatch=True))
@example(text="+99999999d")
def test_durations_from_now_are_times_or_value_errors(text: str) -> None:
    """`+99999999d` (CLI and client) is a ValueError that says so, never an OverflowError."""
    try:
        delta = parse_duration(text)
        assert delta is not None
        when = from_now(delta)
    except ValueError as exc:
        assert "nearer" in str(exc)
        return
    assert when.tzinfo is timezone.utc


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/static/nothing.js", 404), ("POST", "/leaderboard", 405), ("PUT", "/static/x", 405)],
)
def test_the_pages_refuse_in_the_json_shape(
    world: World, method: str, path: str, status: int
) -> None:
    """The web page's routes answer errors in the same JSON shape as the API."""
    r = requests.request(method, world.server.url + path, timeout=30)
    assert r.status_code == status
    check(r)


# ---------------------------------------------------------------- keep-alive after refusals


def refusals(w: World) -> dict[str, tuple[str, str, bytes | None, dict[str, str]]]:
    """Requests the server refuses, by the status they get."""
    json_type = {"Content-Type": "application/json"}
    return {
        "401 get": ("GET", "/participants/me", None, bearer("cs_wrong")),
        "401 post": ("POST", f"/competitions/{w.cid}/close", b"{}", bearer("cs_wrong")),
        "401 anonymous upload": ("POST", f"/competitions/{w.cid}/submissions", b"{}", {}),
        "404 route": ("GET", "/nothing", None, {}),
        "404 post": ("POST", "/nothing", b'{"a": 1}', json_type),
        "404 id": ("GET", "/competitions/" + "9" * 5000, None, {}),
        "405": ("PUT", "/competitions", b"{}", json_type),
        "413 small cap": ("POST", "/participants", b" " * 70_000 + b"{}", json_type),
        "400": ("POST", "/participants", b'{"name": 5}', json_type),
        "429": ("POST", f"/competitions/{w.cid}/close", b"", bearer(w.player)),
    }


@pytest.mark.parametrize("kind", list(refusals(World(None, "", "", 1, 1))))  # type: ignore[arg-type]
def test_a_refusal_leaves_the_connection_usable_or_says_close(strict: World, kind: str) -> None:
    """On one keep-alive connection: a refused request, then a normal one. Either the second is
    answered on the same connection, or the refusal said `Connection: close`."""
    method, path, body, headers = refusals(strict)[kind]
    conn = http.client.HTTPConnection("127.0.0.1", strict.server.port, timeout=20)
    if kind == "429":
        for _ in range(5):  # use up the burst (each is a 403: not the host)
            conn.request(method, API + path, body=body, headers=headers)
            conn.getresponse().read()
    conn.request(method, API + path, body=body, headers=headers)
    refused = conn.getresponse()
    assert_error_shape(refused, refused.read())
    assert refused.status >= 400
    closes = (refused.getheader("Connection") or "").lower() == "close"
    sock = conn.sock
    conn.request("GET", API + "/competitions")
    ok = conn.getresponse()
    ok.read()
    assert ok.status == 200
    if not closes:
        assert conn.sock is sock, "answered on a new connection"
    conn.close()


# ---------------------------------------------------------------- the client retries


class DroppingServer:
    """An HTTP/1.1 server that answers the first request of each connection with keep-alive,
    then drops the connection when the second request arrives, without an answer: what a
    client sees when the server closed an idle pooled connection as it was being reused."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            self._read_request(conn)
            self.requests += 1
            body = b'{"competitions": []}'
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            self._read_request(conn)  # the reuse: drop it unanswered

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                left = int(line.split(b":")[1]) - len(body)
                while left > 0:
                    left -= len(conn.recv(65536))

    def close(self) -> None:
        self.sock.close()


def test_the_client_retries_idempotent_requests_once_on_a_dropped_connection() -> None:
    """GETs, and POSTs with an Idempotency-Key, are sent again on a fresh connection; other
    POSTs are not (the server may have acted on them)."""
    server = DroppingServer()
    try:
        client = Client(f"127.0.0.1:{server.port}", token="cs_test", progress=False)
        for _ in range(5):
            assert client.competitions() == []
        key = {"Idempotency-Key": "k1"}
        for _ in range(3):
            client.request("POST", "/competitions", data=b"{}", headers=key)
        client.request("GET", "/competitions")
        with pytest.raises(ConnectionFailed):
            client.request("POST", "/competitions", data=b"{}")
    finally:
        server.close()


def test_one_client_survives_alternating_refusals(strict: World) -> None:
    """40 refused and normal requests, alternating, through one Client: no connection errors."""
    client = Client(strict.server.url, token=strict.player, progress=False)
    refusals = [
        (lambda: client.request("GET", "/nothing"), NotFound),
        (
            lambda: client.request("GET", "/participants/me", headers=bearer("cs_no")),
            ClientUnauthorized,
        ),
        (lambda: client.request("GET", "/competitions", data=b" " * 70_000), BodyTooLarge),
        (lambda: client.request("POST", f"/competitions/{strict.cid}/close"), RateLimited),
    ]
    for _ in range(3):  # use up the write burst, so writes answer 429
        try:
            client.request("POST", f"/competitions/{strict.cid}/close")
        except RateLimited:
            break
        except Forbidden:  # not the host: a write all the same
            continue
    failures = []
    for i in range(40):
        refuse, expected = refusals[i % len(refusals)]
        try:
            if i % 2:
                client.competitions()
            else:
                with pytest.raises(expected):
                    refuse()
        except ConnectionFailed as exc:
            failures.append(str(exc))
    assert failures == []


# ---------------------------------------------------------------- slow connections


def open_slow(port: int, count: int) -> list[socket.socket]:
    """Connections that start a request and never finish its headers."""
    socks = []
    for _ in range(count):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        with contextlib.suppress(OSError):  # not yet connected: a silent connection is as slow
            s.send(b"GET /api/v1/competitions HTTP/1.1\r\nHost: x\r\n")
    return socks


def log_lines(server: ServerProcess) -> int:
    """Lines in the server's log so far."""
    return len(server.log.read_bytes().splitlines())


def test_a_small_body_that_never_ends_is_closed_after_the_idle_timeout(new_server: Any) -> None:
    """A registration body trickled forever is cut off after --idle-timeout, not --body-timeout
    (an hour, for uploads of frames)."""
    server = new_server(None, "--idle-timeout=2", "--scoring=thread")
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            b"POST /api/v1/participants HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        assert sock.recv(65536) == b"", "the server closes the connection"
    assert requests.get(server.url + API + "/competitions", timeout=30).status_code == 200


@pytest.mark.parametrize("cap", ["40", "100000"], ids=["at-the-cap", "out-of-descriptors"])
def test_slow_connections_time_out_without_spinning_or_flooding_the_log(
    new_server: Any, cap: str
) -> None:
    """200 connections that never finish their headers, on a server limited to 128 open files:
    with the cap below the limit they are refused with a 503, with it above the limit accepting
    pauses on EMFILE. Either way the server does not spin or flood its log, and answers normal
    requests again once the slow ones time out."""
    server = new_server(None, "--idle-timeout=2", f"--max-connections={cap}", "--scoring=thread")
    proc = psutil.Process(server.proc.pid)
    proc.rlimit(psutil.RLIMIT_NOFILE, (128, 128))
    cpu, lines = sum(proc.cpu_times()[:2]), log_lines(server)
    slow = open_slow(server.port, 200)
    try:
        time.sleep(6)  # a window in which a spinning accept loop would burn seconds of CPU
        answered = None
        for _ in range(60):
            try:
                answered = requests.get(server.url + API + "/competitions", timeout=10)
                if answered.status_code == 200:
                    break
                assert answered.status_code == 503, answered.text
                check(answered)
            except requests.ConnectionError:
                pass
            time.sleep(1)
        assert answered is not None and answered.status_code == 200
        used = sum(proc.cpu_times()[:2]) - cpu
    finally:
        for s in slow:
            s.close()
    assert used < 2.0, f"the server used {used:.1f} s of CPU: a busy loop"
    assert log_lines(server) - lines < 40, server.log.read_text()[-3000:]
    assert proc.is_running()
