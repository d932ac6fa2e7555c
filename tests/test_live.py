"""Live boards at scale (issue 12), on real servers: the board kept in memory equals the one
read from the database, snapshots plus deltas equal a fresh snapshot, a listener that never
reads is closed once its bounded queue fills, `leaderboard.you`, and REST paging."""

from __future__ import annotations

import json
import re
import socket
import struct
import uuid
from base64 import b64encode
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

import crowdsource.client as CC
from crowdsource.server import leaderboards
from crowdsource.server.ranked import RankedBoard, state
from crowdsource.server.storage.tables import Competition
from tests.api import Api, classify_data, events_url, read_event
from tests.live import Follower
from tests.support import ServerProcess

DATASET, ANSWER = classify_data(20)
PEOPLE = 6


def guess(wrong: int, seed: int = 0) -> pd.DataFrame:
    """The answer with `wrong` labels changed (accuracy (20 - wrong) / 20)."""
    labels = ANSWER["label"].to_numpy().copy()
    rows = np.random.default_rng(seed).permutation(len(labels))[:wrong]
    labels[rows] = np.where(labels[rows] == "a", "b", "a")
    return ANSWER.assign(label=labels)


def host(api: Api) -> int:
    """A small accuracy-scored competition."""
    spec = {"type": "classify", "metric": "accuracy", "targets": ["label"]}
    return int(api.host(**spec, dataset=DATASET, answer=ANSWER)["id"])


def from_database(db: str, cid: int) -> list[dict[str, Any]]:
    """The public board as read from the database afresh."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as session:
            comp = session.get_one(Competition, cid)
            return list(leaderboards.load_board(session, comp, name="public")["entries"])
    finally:
        engine.dispose()


# -- the board in memory -----------------------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, PEOPLE - 1), st.integers(0, 6)),
    st.tuples(st.just("join"), st.integers(0, PEOPLE - 1), st.integers(0, PEOPLE - 1)),
    st.tuples(st.just("disqualify"), st.integers(0, PEOPLE - 1), st.just(0)),
    st.tuples(st.just("requalify"), st.integers(0, PEOPLE - 1), st.just(0)),
)


def play(owner: Api, people: list[Api], cid: int, op: tuple[str, int, int]) -> None:
    """One change to a competition (refusals, such as a disqualified submitter's, are fine)."""
    kind, who, other = op
    me = people[who]
    if kind == "submit":
        me.submit(cid, guess(other, seed=who))
    elif kind == "join":
        made = me.post(f"/competitions/{cid}/teams", json={"name": f"team-{me.name}"})
        code = made.json().get("code") or me.get(f"/competitions/{cid}/teams/mine").json().get(
            "code"
        )
        if code and other != who:
            people[other].post(f"/competitions/{cid}/teams/join", json={"code": code})
    elif kind == "disqualify":
        body = {"participant": me.id, "reason": "testing"}
        owner.post(f"/competitions/{cid}/disqualified", json=body)
    else:
        owner.session.delete(f"{owner.url}/api/v1/competitions/{cid}/disqualified/{me.id}")


def test_the_board_in_memory_equals_the_board_in_the_database(
    tmp_path: Path, new_server: Any
) -> None:
    """After any sequence of scores, team joins, disqualifications and requalifications, the
    board the server keeps in memory (and serves) is the one read from the database."""
    db = str(tmp_path / "memory.db")
    server = new_server(db)
    owner = Api(server)
    people = [Api(server) for _ in range(PEOPLE)]

    @settings(
        max_examples=15,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(st.lists(OPS, min_size=1, max_size=10))
    def check(ops: list[tuple[str, int, int]]) -> None:
        cid = host(owner)
        assert owner.board(cid)["entries"] == []  # in memory from now, moved by each change
        for op in ops:
            play(owner, people, cid, op)
        assert owner.board(cid)["entries"] == from_database(db, cid)

    check()


HEADER = {"competition_id": 1, "title": "t", "board": "public", "metric": "accuracy"}


@given(
    st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=4), min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_entry_states_arriving_in_any_order_end_on_the_newest(
    histories: list[list[int]], rng: Any
) -> None:
    """Each participant's states (one more submission each, the score kept at its best)
    applied in any order, stale ones late, leave the board a fresh load of the newest gives."""
    newest, arriving = [], []
    for pid, scores in enumerate(histories, 1):
        best: float | None = None
        for n, score in enumerate(scores, 1):
            best = score / 5 if best is None else max(best, score / 5)
            arriving.append(state(pid, best, n, f"2026-12-01T00:00:0{n}+00:00", f"p{pid}"))
        newest.append(arriving[-1])
    rng.shuffle(arriving)
    live = RankedBoard(header=HEADER, higher_is_better=True)
    for found in arriving:
        live.put(found)
    loaded = RankedBoard(header=HEADER, higher_is_better=True)
    loaded.fill(newest)
    assert live.entries() == loaded.entries()
    assert [e["rank"] for e in live.entries()] == sorted(e["rank"] for e in live.entries())


# -- snapshots and deltas ----------------------------------------------------------------------


def follow_random_submissions(server: ServerProcess, *, people: int, submissions: int) -> None:
    """A listener that applies snapshot and deltas ends equal to a fresh snapshot, with the
    top window (5 entries) moving: entries enter, move and leave it."""
    owner = Api(server)
    entrants = [Api(server) for _ in range(people)]
    cid = host(owner)
    rng = np.random.default_rng(7)
    with closing(websocket.create_connection(events_url(server, competition=cid))) as ws:
        follower = Follower(ws)
        follower.until(lambda f: f.snapshots == 1)
        entered = set()
        for i in range(submissions):
            who = int(rng.integers(people))
            entrants[who].submit(cid, guess(int(rng.integers(8)), seed=i))
            entered.add(who)
        fresh: list[Any] = []

        def caught_up(f: Follower) -> bool:
            """The follower equals a fresh snapshot taken after every submission's push."""
            with closing(websocket.create_connection(events_url(server, competition=cid))) as new:
                fresh[:] = [read_event(new, "leaderboard.snapshot")["data"]]
            if fresh[0]["total"] != len(entered) or f.board["total"] != len(entered):
                return False  # a push still to come (they are coalesced)
            return bool(f.entries == fresh[0]["entries"])

        follower.until(caught_up, timeout=60)
    assert len(fresh[0]["entries"]) == 5 and fresh[0]["limit"] == 5
    assert "leaderboard.delta" in follower.kinds  # the window moved by deltas (coalesced)
    assert [e["rank"] for e in fresh[0]["entries"]] == sorted(
        e["rank"] for e in fresh[0]["entries"]
    )


def test_snapshot_and_deltas_equal_a_fresh_snapshot(database: str, new_server: Any) -> None:
    """On SQLite and on PostgreSQL."""
    server = new_server(database, "--live-top=5")
    follow_random_submissions(server, people=9, submissions=30)


def test_snapshot_and_deltas_equal_a_fresh_snapshot_across_processes(
    tmp_path: Path, new_server: Any
) -> None:
    """With --processes=2 the listener's process applies entries the other one recorded."""
    server = new_server(str(tmp_path / "two.db"), "--processes=2", "--live-top=5")
    follow_random_submissions(server, people=9, submissions=30)


def test_a_client_asks_for_a_snapshot_again(sqlite_server: ServerProcess) -> None:
    """`{"type": "snapshot"}` is answered with a fresh snapshot of the same board."""
    owner, ann = Api(sqlite_server), Api(sqlite_server)
    cid = host(owner)
    ann.submit(cid, guess(2))
    with closing(websocket.create_connection(events_url(sqlite_server, competition=cid))) as ws:
        first = read_event(ws, "leaderboard.snapshot")["data"]
        ws.send(json.dumps({"type": "snapshot"}))
        again = read_event(ws, "leaderboard.snapshot")["data"]
    assert again == first and [e["name"] for e in again["entries"]] == [ann.name]


def test_listeners_of_every_competition_hear_of_changes_without_boards(
    sqlite_server: ServerProcess,
) -> None:
    """A listener without `competition=` gets `leaderboard.changed` with a version and the
    total, never a board."""
    owner, ann = Api(sqlite_server), Api(sqlite_server)
    cid = host(owner)
    with closing(websocket.create_connection(events_url(sqlite_server))) as ws:
        read_event(ws, "hello")
        ann.submit(cid, guess(1))
        while (changed := read_event(ws, "leaderboard.changed"))["competition_id"] != cid:
            pass
    assert set(changed["data"]) == {"version", "total"} and changed["data"]["total"] == 1


def types_until(ws: Any, last: str, competition: int) -> list[str]:
    """The types of the events a stream gets up to the first `last` of a competition."""
    kinds = []
    ws.settimeout(30)
    while True:
        event = json.loads(ws.recv())
        kinds.append(event["type"])
        if event["type"] == last and event["competition_id"] == competition:
            return kinds


def test_submissions_mine_leaves_out_others_submission_events(
    sqlite_server: ServerProcess,
) -> None:
    """`submissions=mine` streams (of one competition, or of every one) hear of the board's
    changes and of their own submissions, whole, but of nobody else's; `all` hears of
    everyone's; anything else is a 400 that says what to send."""
    owner, ann, bob = Api(sqlite_server), Api(sqlite_server), Api(sqlite_server)
    cid = host(owner)
    urls = {
        "board, all": events_url(sqlite_server, competition=cid, token=ann.token),
        "board, mine": events_url(
            sqlite_server, competition=cid, token=ann.token, submissions="mine"
        ),
        "every, all": events_url(sqlite_server, submissions="all"),
        "every, mine": events_url(sqlite_server, token=ann.token, submissions="mine"),
    }
    streams = {name: websocket.create_connection(url) for name, url in urls.items()}
    try:
        for ws in streams.values():
            read_event(ws, "hello")
        bob.submit(cid, guess(3))  # somebody else's, then ann's own
        last = ann.submit(cid, guess(1)).json()["id"]
        end = {"board": "leaderboard.delta", "every": "leaderboard.changed"}
        heard = {}
        for name, ws in streams.items():
            kinds = types_until(ws, end[name.split(",")[0]], cid)
            while kinds.count("submission.scored") < (2 if name.endswith("all") else 1):
                kinds += types_until(ws, end[name.split(",")[0]], cid)
            heard[name] = kinds
    finally:
        for ws in streams.values():
            ws.close()
    for name, kinds in heard.items():
        assert kinds.count("submission.scored") == (2 if name.endswith("all") else 1), name
    with closing(websocket.create_connection(urls["every, mine"])) as ws:
        read_event(ws, "hello")
        bob.submit(cid, guess(4))
        mine = ann.submit(cid, guess(0)).json()["id"]
        scored = read_event(ws, "submission.scored", timeout=30)["data"]
    assert scored["submission_id"] == mine != last and "reason" in scored
    for bad in ("everyone", "MINE", "1"):
        url = events_url(sqlite_server, submissions=bad).replace("ws", "http", 1)
        handshake = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
        r = requests.get(url, headers={**handshake, "Sec-WebSocket-Key": "dGhlIHNhbXBsZQ=="})
        assert r.status_code == 400 and "'submissions' must be all" in r.json()["message"], r.text


def test_your_own_place_comes_with_each_change(sqlite_server: ServerProcess) -> None:
    """An authenticated listener hears its own rank, score and the board's size, and again
    when they change."""
    owner = Api(sqlite_server)
    best, me, worst = Api(sqlite_server), Api(sqlite_server), Api(sqlite_server)
    cid = host(owner)
    for who, wrong in ((best, 0), (me, 2), (worst, 5)):
        who.submit(cid, guess(wrong))
    url = events_url(sqlite_server, competition=cid, token=me.token)
    with closing(websocket.create_connection(url)) as ws:
        you = read_event(ws, "leaderboard.you")["data"]
        assert (you["participant_id"], you["rank"], you["score"], you["total"]) == (
            me.id,
            2,
            0.9,
            3,
        )
        me.submit(cid, guess(0, seed=9))
        assert read_event(ws, "leaderboard.you")["data"]["rank"] == 1  # tied with the best


def test_a_team_members_place_is_the_teams(sqlite_server: ServerProcess) -> None:
    """A team member's own place, live and by REST (public, and private after the close),
    is the team's entry, keyed by its captain."""
    owner, captain, member, rival = (Api(sqlite_server) for _ in range(4))
    cid = host(owner)
    code = captain.post(f"/competitions/{cid}/teams", json={"name": "the team"}).json()["code"]
    member.post(f"/competitions/{cid}/teams/join", json={"code": code})
    rival.submit(cid, guess(0))
    member.submit(cid, guess(3))
    url = events_url(sqlite_server, competition=cid, token=member.token)
    with closing(websocket.create_connection(url)) as ws:
        you = read_event(ws, "leaderboard.you")["data"]
    assert (you["participant_id"], you["rank"], you["total"]) == (captain.id, 2, 2)
    path = f"/competitions/{cid}/leaderboard"
    public = member.get(path, params={"around": "me"}).json()
    assert (public["me"]["name"], public["me"]["rank"], public["offset"]) == ("the team", 2, 0)
    owner.post(f"/competitions/{cid}/close")
    private = member.get(path, params={"around": "me", "board": "private"}).json()
    assert private["me"]["name"] == "the team" and private["total"] == 2


# -- a listener that never reads ---------------------------------------------------------------


def raw_websocket(url: str) -> socket.socket:
    """A WebSocket whose reading is up to the test (a small receive buffer: it fills soon)."""
    host_port, path = url.removeprefix("ws://").split("/", 1)
    address, port = host_port.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address, int(port)))
    key = b64encode(uuid.uuid4().bytes).decode()
    sock.sendall(
        f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return sock


def masked_text(text: str) -> bytes:
    """A client's text frame (clients mask theirs)."""
    data, mask = text.encode(), b"\x01\x02\x03\x04"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x81, 0x80 | len(data)]) + mask + body


def close_frame(stream: bytes) -> tuple[int, str] | None:
    """The code and reason of the close frame in a server's byte stream, if any."""
    at = stream.index(b"\r\n\r\n") + 4
    while at + 2 <= len(stream):
        opcode, size = stream[at] & 0x0F, stream[at + 1] & 0x7F
        at += 2
        if size == 126:
            size, at = struct.unpack(">H", stream[at : at + 2])[0], at + 2
        elif size == 127:
            size, at = struct.unpack(">Q", stream[at : at + 8])[0], at + 8
        if opcode == 0x8:
            body = stream[at : at + size]
            return struct.unpack(">H", body[:2])[0], body[2:].decode()
        at += size
    return None


def test_a_listener_that_never_reads_is_closed_and_its_queue_stays_bounded(
    tmp_path: Path, new_server: Any
) -> None:
    """A listener that asks for snapshot after snapshot and reads none is closed with 4000
    once the frames waiting for it pass --send-queue-kb; no connection ever had more waiting;
    others are served meanwhile."""
    server = new_server(str(tmp_path / "slow.db"), "--send-queue-kb=64")
    owner = Api(server)
    cid = host(owner)
    for wrong in range(5):
        Api(server, name=f"a-long-name-{'x' * 80}-{wrong}").submit(cid, guess(wrong))
    slow = raw_websocket(events_url(server, competition=cid))
    slow.sendall(masked_text(json.dumps({"type": "snapshot"})) * 3000)  # ~6 MB of snapshots
    assert owner.board(cid)["total"] == 5  # the server is not held up by it
    slow.settimeout(30)
    stream = b""
    while chunk := slow.recv(1 << 20):
        stream += chunk
    assert close_frame(stream) == (4000, "fell behind: reconnect to resync")
    assert len(stream) < 3000 * 2000  # most snapshots were never queued
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    peak = float(re.search(r"^crowdsource_websocket_queue_peak_bytes (\S+)", metrics, re.M)[1])
    assert 0 < peak <= 64 * 1024


# -- paging ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nine(sqlite_server: ServerProcess) -> tuple[int, list[Api]]:
    """A competition with nine entries of distinct scores, best first in the list."""
    owner = Api(sqlite_server)
    cid = host(owner)
    people = [Api(sqlite_server) for _ in range(9)]
    for wrong, who in enumerate(people):
        who.submit(cid, guess(wrong))
    return cid, people


def test_a_board_pages_with_its_total(nine: tuple[int, list[Api]]) -> None:
    """`limit` and `offset` give a slice of the ranked board and the total."""
    cid, people = nine
    page = people[0].get(f"/competitions/{cid}/leaderboard", params={"limit": 3, "offset": 2})
    data = page.json()
    assert (data["total"], data["limit"], data["offset"]) == (9, 3, 2)
    assert [e["rank"] for e in data["entries"]] == [3, 4, 5]
    whole = people[0].board(cid)
    assert (len(whole["entries"]), whole["total"], whole["limit"]) == (9, 9, None)


def test_around_me_centres_the_page_on_the_caller(nine: tuple[int, list[Api]]) -> None:
    """`around=me` gives `limit` entries with the caller's in the middle, and `me`."""
    cid, people = nine
    params = {"around": "me", "limit": 3}
    data = people[4].get(f"/competitions/{cid}/leaderboard", params=params).json()
    assert [e["rank"] for e in data["entries"]] == [4, 5, 6]
    assert (data["me"]["participant"]["id"], data["offset"]) == (people[4].id, 3)
    first = people[0].get(f"/competitions/{cid}/leaderboard", params=params).json()
    assert [e["rank"] for e in first["entries"]] == [1, 2, 3]


def test_around_me_without_an_entry_or_a_token(
    nine: tuple[int, list[Api]], sqlite_server: ServerProcess
) -> None:
    """A caller with no entry gets no entries and `me` null; without a token, 401."""
    cid, _ = nine
    outsider = Api(sqlite_server)
    data = outsider.get(f"/competitions/{cid}/leaderboard", params={"around": "me"}).json()
    assert (data["entries"], data["me"], data["total"]) == ([], None, 9)
    url = f"{sqlite_server.url}/api/v1/competitions/{cid}/leaderboard"
    assert requests.get(url, params={"around": "me"}, timeout=10).status_code == 401


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": 0}, "'limit' must be a whole number from 1 to 10000"),
        ({"limit": 10001}, "'limit' must be a whole number from 1 to 10000"),
        ({"limit": "ten"}, "'limit' must be a whole number"),
        ({"offset": -1}, "'offset' must be a whole number from 0"),
        ({"around": "you"}, "'around' may only be 'me'"),
    ],
)
def test_bad_paging_is_a_400_that_says_the_range(
    nine: tuple[int, list[Api]], params: dict[str, Any], words: str
) -> None:
    """Bad `limit`, `offset` or `around` is refused, saying what to send."""
    cid, people = nine
    r = people[0].get(f"/competitions/{cid}/leaderboard", params=params)
    assert r.status_code == 400 and words in r.json()["message"], r.text


def test_listings_page_and_the_client_follows_the_pages(tmp_path: Path, new_server: Any) -> None:
    """/leaderboards (50 competitions a page) and /competitions page with a total; the
    client's `leaderboards()` and `competitions()` still return everything."""
    server = new_server(str(tmp_path / "many.db"))
    owner = Api(server)
    ids = [host(owner) for _ in range(52)]
    page = owner.get("/leaderboards", params={"offset": 50}).json()
    assert (page["total"], page["limit"], len(page["leaderboards"])) == (52, 50, 2)
    listed = owner.get("/competitions", params={"limit": 10}).json()
    assert (listed["total"], len(listed["competitions"])) == (52, 10)
    assert owner.get("/competitions", params={"limit": 1001}).status_code == 400
    client = CC.Client(server.url, token=owner.token)
    assert sorted(c.id for c in client.competitions()) == sorted(ids)
    Api(server).submit(ids[0], guess(0))
    Api(server).submit(ids[-1], guess(1))
    assert sorted(client.leaderboards()["competition_id"]) == sorted([ids[0], ids[-1]])
    mine = client.leaderboard(ids[0], limit=1, offset=0)
    assert (len(mine), mine.attrs["total"], mine.attrs["offset"]) == (1, 1, 0)
