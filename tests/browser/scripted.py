"""A stand-in crowdsource server that speaks the live-board frames (snapshot, delta, resync,
close 4000) exactly as the test scripts them, with the real page handlers: it drives the
front end through version gaps and reconnects a real server produces only by chance."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from tornado import netutil, web, websocket
from tornado.httpserver import HTTPServer

from crowdsource.server.handlers.pages import default_handlers as page_handlers

COMPETITION = {
    "id": 1,
    "title": "Scripted",
    "description": "",
    "type": "regress",
    "metric": "rmse",
    "higher_is_better": False,
    "host": {"id": 99, "name": "host"},
    "opens_at": None,
    "closes_at": None,
    "status": "open",
    "created_at": "2026-12-01T09:00:00Z",
}


def entry(pid: int, rank: int | None, name: str, score: float | None) -> dict:
    """A board entry (spec section 1)."""
    return {
        "rank": rank,
        "name": name,
        "participant": {"id": pid, "name": name},
        "team": None,
        "score": score,
        "submissions": 1,
        "last_submission_at": "2026-12-01T09:00:00Z",
    }


class ScriptedServer:
    """Serves /leaderboard, one competition, its board and the event stream on a free port;
    the test sets the board, pushes frames and reads what clients sent."""

    def __init__(self) -> None:
        self.version = 1
        self.entries: list[dict] = []
        self.received: list[dict] = []
        self.sockets: list[Events] = []
        self.loop = asyncio.new_event_loop()
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        app = web.Application(
            [
                *page_handlers,
                (r"/api/v1/competitions", Competitions),
                (r"/api/v1/participants/me", Unauthorized),
                (r"/api/v1/competitions/1/leaderboard", Board, {"server": self}),
                (r"/api/v1/events", Events, {"server": self}),
            ]
        )
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self.loop)
            HTTPServer(app).add_sockets(sockets)
            self.loop.call_soon(ready.set)
            self.loop.run_forever()

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        ready.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def snapshot(self) -> dict:
        """The board as a `leaderboard.snapshot` frame."""
        data = {
            "board": "public",
            "version": self.version,
            "total": len(self.entries),
            "limit": 100,
            "title": COMPETITION["title"],
            "metric": "rmse",
            "higher_is_better": False,
            "entries": self.entries,
        }
        return frame("leaderboard.snapshot", data)

    def set_board(self, version: int, entries: list[dict]) -> None:
        """What the next snapshot (a resync, a reconnect) holds."""

        def apply() -> None:
            self.version, self.entries = version, entries

        self.call(apply)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn` on the server's loop."""
        self.loop.call_soon_threadsafe(fn)

    def push(self, data: dict, *, type: str = "leaderboard.delta") -> None:
        """Send a frame to every listener of the competition."""
        text = json.dumps(frame(type, data))
        self.call(lambda: [s.write_message(text) for s in list(self.sockets)])

    def close_all(self, code: int = 4000, reason: str = "fell behind: reconnect to resync") -> None:
        """Close every listener, as the bounded send queue does."""
        self.call(lambda: [s.close(code, reason) for s in list(self.sockets)])

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def frame(type: str, data: dict) -> dict:
    """An event frame (spec section 2)."""
    return {"type": type, "competition_id": 1, "data": data, "at": "2026-12-01T10:00:00Z"}


class Cors(web.RequestHandler):
    """JSON readable from the JupyterLab page's origin too."""

    def set_default_headers(self) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Access-Control-Allow-Headers", "Authorization")

    def options(self, *args: str) -> None:
        self.set_status(204)


class Competitions(Cors):
    def get(self) -> None:
        self.write({"competitions": [COMPETITION], "total": 1, "limit": 100, "offset": 0})


class Unauthorized(Cors):
    def get(self) -> None:
        self.set_status(401)
        self.write({"error": "unauthorized", "message": "no such token", "status": 401})


class Board(Cors):
    def initialize(self, server: ScriptedServer) -> None:
        self.server = server

    def get(self) -> None:
        entries = self.server.entries
        self.write({"competition_id": 1, "board": "public", "metric": "rmse",
                    "higher_is_better": False, "entries": entries[:100],
                    "total": len(entries), "limit": 100, "offset": 0})  # fmt: skip


class Events(websocket.WebSocketHandler):
    def initialize(self, server: ScriptedServer) -> None:
        self.server = server

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str) -> None:
        self.write_message(json.dumps(frame("hello", {})))
        if self.get_argument("competition", None) == "1":
            self.server.sockets.append(self)
            self.write_message(json.dumps(self.server.snapshot()))

    def on_message(self, message: str | bytes) -> None:
        sent = json.loads(message)
        self.server.received.append(sent)
        if sent.get("type") == "snapshot":
            self.write_message(json.dumps(self.server.snapshot()))

    def on_close(self) -> None:
        if self in self.server.sockets:
            self.server.sockets.remove(self)
