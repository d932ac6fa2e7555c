"""The client's one event follower (`crowdsource.client.live`): against a real server, and
against a scripted WebSocket server for what a healthy server never does (a gap in versions)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from hypothesis import given
from hypothesis import strategies as st

from crowdsource.client import Client, Competition
from crowdsource.client.live import LiveBoard, _apply_delta, _order
from tests.support import ServerProcess, refusing_port


def joined(server: ServerProcess, prefix: str = "p") -> Client:
    """A client registered as a new participant."""
    client = Client(server.url, progress=False)
    client.register(f"{prefix}-{uuid.uuid4().hex[:12]}", save=False)
    return client


def hosted(server: ServerProcess) -> tuple[Client, Competition]:
    """A host and a small regression competition (rmse)."""
    host = joined(server, "host")
    data = pd.DataFrame({"id": range(10), "x": np.arange(10.0)})
    competition = host.host(data, data.rename(columns={"x": "y"}), type="regress")
    return host, competition


def submit(player: Client, competition: Competition, error: float) -> None:
    """Predictions off by `error` everywhere (rmse == error)."""
    player.submit(competition.id, pd.DataFrame({"id": range(10), "y": np.arange(10.0) + error}))


@pytest.fixture
def following() -> Iterator[Callable[[Client, int], LiveBoard]]:
    """Factory of started live boards, stopped after the test."""
    boards: list[LiveBoard] = []

    def make(client: Client, competition_id: int) -> LiveBoard:
        board = LiveBoard(client, competition_id, interval=0.05, max_backoff=0.5).start()
        boards.append(board)
        return board

    yield make
    for board in boards:
        board.stop()


# -- against a real server ----------------------------------------------------------------------


def test_board_follows_submissions(sqlite_server: ServerProcess, following: Any) -> None:
    """Scores reach the board in rank order, with a history point per new best score."""
    host, competition = hosted(sqlite_server)
    live = following(host, competition.id)
    bob, eve = joined(sqlite_server, "bob"), joined(sqlite_server, "eve")
    submit(bob, competition, 2.0)
    submit(eve, competition, 3.0)
    assert live.wait(lambda board: board["total"] == 2, timeout=20)
    submit(eve, competition, 1.0)
    eve_first = [eve.participant["name"], bob.participant["name"]]  # type: ignore[index]
    assert live.wait(lambda board: [e["name"] for e in board["entries"]] == eve_first)
    assert [p["score"] for p in live.history] == pytest.approx([2.0, 3.0, 1.0])
    assert live.board["metric"] == "rmse" and live.status == "live"


def test_callbacks_are_coalesced_and_removable(
    sqlite_server: ServerProcess, following: Any
) -> None:
    """on_change callbacks hear changes; a removed one hears no more."""
    host, competition = hosted(sqlite_server)
    heard: list[int] = []
    live = following(host, competition.id)
    live.on_change(lambda board: heard.append(board.board["total"]))
    submit(joined(sqlite_server), competition, 1.0)
    assert live.wait(lambda board: board["total"] == 1, timeout=20)
    live.follower.wait_connected(5)
    live.wait(lambda board: bool(heard) and heard[-1] == 1, timeout=5)
    assert heard[-1] == 1
    live.on_change(live._callbacks[0], remove=True)
    assert live._callbacks == []


def test_reconnects_after_a_server_restart(new_server: Any, following: Any) -> None:
    """A killed and restarted server: the board reconnects, resyncs and follows again."""
    server = new_server()
    host, competition = hosted(server)
    live = following(host, competition.id)
    assert live.follower.wait_connected(10)
    server.restart()
    submit(joined(server), competition, 1.0)
    assert live.wait(lambda board: board["total"] == 1, timeout=30)
    assert live.follower.connections >= 2


def test_a_listener_below_the_top_window_gets_its_neighbourhood(
    new_server: Any, following: Any
) -> None:
    """With a top window of 2, the 4th of 5 hears its place and reads the entries around
    it; once it climbs into the window the neighbourhood is dropped."""
    server = new_server(None, "--live-top=2")
    _, competition = hosted(server)
    players = [joined(server) for _ in range(5)]
    for error, player in enumerate(players, start=1):
        submit(player, competition, float(error))
    fourth = players[3]
    live = following(fourth, competition.id)
    assert live.wait(lambda board: bool(live.around), timeout=30)
    assert live.you is not None and live.you["rank"] == 4 and live.you["total"] == 5
    names = [e["name"] for e in live.around]
    assert fourth.participant["name"] in names  # type: ignore[index]
    assert len(live.board["entries"]) == 2
    submit(fourth, competition, 0.5)
    assert live.wait(lambda board: live.you is not None and live.you["rank"] == 1, timeout=30)
    assert live.wait(lambda board: not live.around, timeout=30)


def test_stop_from_another_thread(sqlite_server: ServerProcess, following: Any) -> None:
    """stop() from another thread wakes a waiter, ends the thread, and may be repeated."""
    host, competition = hosted(sqlite_server)
    live = following(host, competition.id)
    assert live.follower.wait_connected(10)
    threading.Timer(0.2, live.stop).start()
    assert not live.wait(lambda board: False, timeout=30)
    live.stop()
    assert live.status == "stopped"
    assert live.follower._thread is not None and not live.follower._thread.is_alive()


def test_stop_while_waiting_to_reconnect() -> None:
    """A server that refuses: the board says it is reconnecting; stop() ends that too."""
    with refusing_port() as port:
        live = LiveBoard(Client(f"127.0.0.1:{port}"), 1, max_backoff=30).start()
        assert live.wait(lambda board: "reconnecting" in live.status, timeout=10)
        assert "cannot reach" in live.status
        stopper = threading.Thread(target=live.stop)
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive() and live.status == "stopped"


# -- against a scripted server --------------------------------------------------------------------


def entry(pid: int, rank: int | None, score: float | None) -> dict[str, Any]:
    """A board entry named p<pid>."""
    return {
        "rank": rank,
        "name": f"p{pid}",
        "participant": {"id": pid, "name": f"p{pid}"},
        "team": None,
        "score": score,
        "submissions": 1,
        "last_submission_at": "2026-12-01T08:00:00+00:00",
    }


def frame(type: str, data: dict[str, Any]) -> str:
    """One event frame."""
    return json.dumps({"type": type, "competition_id": 1, "data": data, "at": None})


def snapshot(version: int, entries: list[dict[str, Any]]) -> str:
    """A snapshot frame of the public board."""
    data = {"board": "public", "version": version, "total": len(entries), "limit": 100}
    data |= {"title": "t", "metric": "rmse", "higher_is_better": False, "entries": entries}
    return frame("leaderboard.snapshot", data)


def delta(version: int, previous: int, entries: list[dict[str, Any]], total: int) -> str:
    """A delta frame of the public board."""
    data = {"board": "public", "version": version, "previous": previous, "total": total}
    return frame("leaderboard.delta", data | {"entries": entries, "removed": []})


class Scripted(tornado.websocket.WebSocketHandler):
    """Sends its script on open; answers `{"type": "snapshot"}` with its resync frame."""

    def initialize(self, script: list[str], resync: str, asked: list[Any]) -> None:
        self.script, self.resync, self.asked = script, resync, asked

    def open(self, *args: str, **kwargs: str) -> None:
        for message in self.script:
            if message == "close":
                self.close(4000, "fell behind: reconnect to resync")
                return
            self.write_message(message)

    def on_message(self, message: str | bytes) -> None:
        self.asked.append(json.loads(message))
        self.write_message(self.resync)


@pytest.fixture
def scripted() -> Iterator[Callable[[list[str], str], tuple[str, list[Any]]]]:
    """Factory of scripted event servers on free ports, each in its own thread."""
    stops: list[Callable[[], None]] = []

    def make(script: list[str], resync: str) -> tuple[str, list[Any]]:
        asked: list[Any] = []
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        port = sockets[0].getsockname()[1]
        app = tornado.web.Application(
            [(r"/api/v1/events", Scripted, {"script": script, "resync": resync, "asked": asked})]
        )
        loop = asyncio.new_event_loop()
        done = asyncio.Event()

        async def serve() -> None:
            tornado.httpserver.HTTPServer(app).add_sockets(sockets)
            await done.wait()

        threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True).start()
        stops.append(lambda: loop.call_soon_threadsafe(done.set))
        return f"http://127.0.0.1:{port}", asked

    yield make
    for stop in stops:
        stop()


def test_a_gap_in_versions_asks_for_a_snapshot(scripted: Any, following: Any) -> None:
    """A delta whose `previous` is not the board's version is not applied: the board asks
    for a snapshot on the socket and takes that."""
    hello = frame("hello", {})
    script = [
        hello,
        snapshot(1, [entry(1, 1, 1.0), entry(2, 2, 2.0)]),
        delta(2, 1, [entry(3, 1, 0.5), entry(1, 2, 1.0), entry(2, 3, 2.0)], total=3),
        delta(9, 8, [entry(4, 1, 0.1)], total=4),  # versions 3 to 8 were missed
        frame("leaderboard.you", {"version": 9, "participant_id": 2, "rank": 4, "total": 4}),
    ]
    resync = snapshot(10, [entry(4, 1, 0.1), entry(3, 2, 0.5), entry(1, 3, 1.0)])
    url, asked = scripted(script, resync)
    live = following(Client(url), 1)
    assert live.wait(lambda board: board["version"] == 10, timeout=10)
    assert [e["name"] for e in live.board["entries"]] == ["p4", "p3", "p1"]
    assert asked == [{"type": "snapshot"}] and live.resyncs == 1
    assert [p["name"] for p in live.history] == ["p1", "p2", "p3", "p4"]
    assert live.you == {"version": 9, "participant_id": 2, "rank": 4, "total": 4}


def test_a_whole_board_event_counts_as_a_snapshot(scripted: Any, following: Any) -> None:
    """`leaderboard.changed` carrying the whole board (servers before live deltas) replaces it."""
    board = {"title": "t", "metric": "rmse", "higher_is_better": False}
    script = [
        frame("hello", {}),
        snapshot(1, [entry(1, 1, 1.0)]),
        frame("leaderboard.changed", board | {"entries": [entry(2, 1, 0.5), entry(1, 2, 1.0)]}),
    ]
    url, asked = scripted(script, snapshot(1, []))
    live = following(Client(url), 1)
    assert live.wait(lambda board: board["total"] == 2, timeout=10)
    assert [e["name"] for e in live.board["entries"]] == ["p2", "p1"] and asked == []


def test_callbacks_hear_a_burst_once_per_interval(scripted: Any) -> None:
    """Thirty deltas in a burst: the callbacks hear the first board at once and the rest
    once the interval has passed (here: at stop, which tells them the last state)."""
    deltas = [delta(v, v - 1, [entry(v, 1, 1.0 / v)], total=v) for v in range(2, 31)]
    url, _ = scripted([frame("hello", {}), snapshot(1, [entry(1, 1, 1.0)]), *deltas], "")
    heard: list[tuple[int, str]] = []
    live = LiveBoard(Client(url), 1, interval=3600)
    live.on_change(lambda board: heard.append((board.version, board.status)))
    live.start()
    assert live.wait(lambda board: board["version"] == 30, timeout=10)
    assert [version for version, status in heard if status == "live"] == [0, 1]
    live.stop()
    assert heard[-1] == (30, "stopped")


def test_a_close_code_shows_in_the_status(scripted: Any) -> None:
    """A server that closes the stream with a code and reason: the status says which, while
    the board reconnects."""
    url, _ = scripted([frame("hello", {}), snapshot(1, [entry(1, 1, 1.0)]), "close"], "")
    live = LiveBoard(Client(url), 1, max_backoff=30).start()
    try:
        assert live.wait(lambda board: "4000: fell behind" in live.status, timeout=10)
        assert live.follower.connections >= 1 and live.board["total"] == 1
    finally:
        live.stop()


# -- applying deltas: a property ------------------------------------------------------------------


def ranked(scores: dict[int, float | None], limit: int) -> list[dict[str, Any]]:
    """The top `limit` of a board of these scores (lower is better; ties share a rank)."""
    order = sorted(scores, key=lambda pid: (scores[pid] is None, scores[pid] or 0, f"p{pid}"))
    entries: list[dict[str, Any]] = []
    for i, pid in enumerate(order):
        score = scores[pid]
        tied = entries and entries[-1]["score"] == score
        rank = None if score is None else (entries[-1]["rank"] if tied else i + 1)
        entries.append(entry(pid, rank, score))
    return sorted(entries, key=_order)[:limit]


BOARDS = st.dictionaries(
    st.integers(1, 40), st.one_of(st.none(), st.sampled_from([0.5, 1.0, 2.0, 3.0])), max_size=30
)


@given(BOARDS, BOARDS, st.integers(1, 12))
def test_a_delta_turns_one_top_window_into_the_next(
    before: dict[int, float | None], after: dict[int, float | None], limit: int
) -> None:
    """Whatever changed, the delta the spec describes brings the old window to the new one."""
    old, new = ranked(before, limit), ranked(after, limit)
    changed = [e for e in new if e not in old]
    window = {e["participant"]["id"] for e in new}
    removed = [e["participant"]["id"] for e in old if e["participant"]["id"] not in window]
    board = {"version": 1, "total": len(before), "limit": limit, "entries": old}
    data = {"version": 2, "previous": 1, "total": len(after)}
    result = _apply_delta(board, data | {"entries": changed, "removed": removed})
    assert result["entries"] == new and result["version"] == 2
