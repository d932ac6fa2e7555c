"""A test client's copy of a live board, kept from the event stream's snapshots and deltas
exactly as docs/api.md tells clients to."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import websocket


def rank_order(entry: dict[str, Any]) -> tuple[bool, int, str]:
    """Where an entry sorts: ranked first, by rank, then by name."""
    return (entry["rank"] is None, entry["rank"] or 0, entry["name"])


class Follower:
    """Applies `leaderboard.snapshot` and `leaderboard.delta` frames; on a version gap (or a
    competition's update, whose title a snapshot carries) it asks for a fresh snapshot."""

    def __init__(self, ws: websocket.WebSocket) -> None:
        self.ws = ws
        self.version: int | None = None
        self.board: dict[str, Any] = {}
        self.entries: list[dict[str, Any]] = []
        self.you: dict[str, Any] | None = None
        self.snapshots = 0
        self.kinds: list[str] = []

    def apply(self, event: dict[str, Any]) -> None:
        """Apply one frame."""
        kind, data = event["type"], event["data"]
        self.kinds.append(kind)
        if kind == "leaderboard.snapshot":
            self.snapshots += 1
            self.board, self.version, self.entries = data, data["version"], list(data["entries"])
        elif kind == "leaderboard.delta" and self.version is not None:
            if data["previous"] != self.version:
                self.resync()
                return
            changed = {e["participant"]["id"]: e for e in data["entries"]}
            gone = set(data["removed"]) | set(changed)
            kept = [e for e in self.entries if e["participant"]["id"] not in gone]
            self.entries = sorted([*kept, *changed.values()], key=rank_order)
            self.entries = self.entries[: self.board["limit"]]
            self.version = data["version"]
            self.board = {**self.board, "total": data["total"]}
        elif kind == "leaderboard.you":
            self.you = data
        elif kind == "competition.updated":
            self.resync()

    def resync(self) -> None:
        """Ask for a fresh snapshot."""
        self.version = None
        self.ws.send(json.dumps({"type": "snapshot"}))

    def read(self, timeout: float = 30.0) -> dict[str, Any]:
        """Read and apply the next frame."""
        self.ws.settimeout(timeout)
        event: dict[str, Any] = json.loads(self.ws.recv())
        self.apply(event)
        return event

    def until(self, wanted: Callable[[Follower], bool], timeout: float = 30.0) -> Follower:
        """Read frames until `wanted(self)` holds."""
        deadline = time.monotonic() + timeout
        while not (self.version is not None and wanted(self)):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the live board never got there: {self.entries}")
            self.read(left)
        return self

    def names(self) -> list[str]:
        """The entries' participant names, in order."""
        return [e["participant"]["name"] for e in self.entries]
