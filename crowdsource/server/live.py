"""The live push of public boards: per competition a ranked board in memory, a version, the
top window last pushed, and its watchers. Changes are coalesced into at most `rate` pushes a
second; each push is encoded once and the same bytes are handed to every watcher."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from crowdsource.server.ranked import RankedBoard, Unknown
from crowdsource.server.tasks import Background
from crowdsource.times import iso, utcnow

log = logging.getLogger(__name__)
Loader = Callable[[int], Awaitable[RankedBoard]]


class Watcher(Protocol):
    """An event-stream connection: takes encoded frames without waiting."""

    @property
    def viewer_id(self) -> int | None:
        """The authenticated listener's participant id (None: anonymous)."""

    def send(self, frame: bytes) -> None:
        """Queue one frame (a slow connection is closed, never waited for)."""


def frame(kind: str, competition_id: int, data: dict[str, Any]) -> bytes:
    """One event frame, encoded."""
    body = {"type": kind, "competition_id": competition_id, "data": data, "at": iso(utcnow())}
    return json.dumps(body).encode()


class LiveBoard:
    """One competition's live board and the watchers of it."""

    def __init__(self, competition_id: int) -> None:
        self.competition_id = competition_id
        self.board: RankedBoard | None = None
        self.loading: asyncio.Future[None] | None = None
        self.again = False  # another reload was asked for while loading
        self.held: list[dict[str, Any]] = []  # entry states that arrived while loading
        self.version = 0
        self.shown: list[dict[str, Any]] = []  # the top window as last pushed
        self.total = 0  # the entries on the board as last pushed
        self.watchers: dict[Watcher, tuple[Any, ...] | None] = {}  # each with its last `you`
        self.dirty = False
        self.timer: asyncio.TimerHandle | None = None
        self.last_push = 0.0
        self._snapshot: tuple[int, RankedBoard, bytes] | None = None  # (a reload: new title)

    def snapshot(self, limit: int) -> bytes:
        """The snapshot of the last push, encoded once per version."""
        assert self.board is not None
        if self._snapshot is None or self._snapshot[:2] != (self.version, self.board):
            header = self.board.header
            data = {
                "board": "public",
                "version": self.version,
                "total": self.total,
                "limit": limit,
                "title": header["title"],
                "metric": header["metric"],
                "higher_is_better": header["higher_is_better"],
                "entries": self.shown,
            }
            encoded = frame("leaderboard.snapshot", self.competition_id, data)
            self._snapshot = (self.version, self.board, encoded)
        return self._snapshot[2]

    def you(self, viewer_id: int) -> tuple[int, int | None, float | None, int]:
        """A viewer's entry id, rank, score and the board's size, from the board now."""
        assert self.board is not None
        s = self.board.entry_of(viewer_id)
        if s is None:
            return (viewer_id, None, None, len(self.board))
        return (s.participant_id, self.board.rank(s), s.score, len(self.board))

    def send_you(self, watcher: Watcher, *, always: bool = False) -> None:
        """Tell an authenticated watcher its own place, if it changed (or `always`)."""
        if watcher.viewer_id is None:
            return
        you = self.you(watcher.viewer_id)
        if not always and self.watchers.get(watcher) == you:
            return
        self.watchers[watcher] = you
        pid, rank, score, total = you
        data = {"version": self.version, "participant_id": pid, "rank": rank, "score": score}
        watcher.send(frame("leaderboard.you", self.competition_id, {**data, "total": total}))


class LiveBoards:
    """Every live board of this process, kept current from the entries recorded in any
    process; whole-board changes reload a board from the database."""

    def __init__(self, load: Loader, *, top: int, rate: float) -> None:
        self._load = load
        self.top = top
        self.rate = rate
        self.boards: dict[int, LiveBoard] = {}
        self.everyone: set[Watcher] = set()  # watchers of no one competition
        self.tasks = Background()

    # ------------------------------------------------------------ watching

    async def ready(self, competition_id: int) -> LiveBoard:
        """A competition's live board, loaded on first use."""
        live = self.boards.get(competition_id)
        if live is None:
            live = self.boards[competition_id] = LiveBoard(competition_id)
            self._reload(live)
        while live.board is None or live.loading is not None:
            assert live.loading is not None
            await asyncio.shield(live.loading)
        return live

    async def watch(self, competition_id: int, watcher: Watcher) -> None:
        """Send a watcher the board's snapshot (and its own place), then every push."""
        live = await self.ready(competition_id)
        watcher.send(live.snapshot(self.top))
        live.watchers[watcher] = None
        live.send_you(watcher, always=True)

    def unwatch(self, watcher: Watcher) -> None:
        """Stop sending to a watcher."""
        self.everyone.discard(watcher)
        for live in self.boards.values():
            live.watchers.pop(watcher, None)

    # ------------------------------------------------------------ changes

    def apply(self, competition_id: int, found: dict[str, Any]) -> None:
        """An entry's new state, recorded by any process."""
        live = self.boards.get(competition_id)
        if live is None:
            if self.everyone:  # they hear of every board: keep this one live from now
                self.tasks.spawn(self.ready(competition_id))
            return
        if live.loading is not None:
            live.held.append(found)
            return
        assert live.board is not None
        try:
            if live.board.put(found):
                self._changed(live)
        except Unknown:  # a team or participant this process has not loaded yet
            self.reload(competition_id)

    def reload(self, competition_id: int) -> None:
        """The board changed as a whole: read it again (if it is live here)."""
        live = self.boards.get(competition_id)
        if live is not None:
            self._reload(live)
        elif self.everyone:
            self.tasks.spawn(self.ready(competition_id))

    def reload_all(self) -> None:
        """Events may have been missed: read every live board again."""
        for competition_id in list(self.boards):
            self.reload(competition_id)

    def drop(self, competition_id: int) -> None:
        """A deleted competition: forget its board."""
        live = self.boards.pop(competition_id, None)
        if live is not None and live.timer is not None:
            live.timer.cancel()

    def _reload(self, live: LiveBoard) -> None:
        """Load a board (again), once at a time; asked during a load, load once more after."""
        if live.loading is not None:
            live.again = True
            return
        live.loading = asyncio.get_running_loop().create_future()
        self.tasks.spawn(self._loads(live))

    async def _loads(self, live: LiveBoard) -> None:
        """Load until no reload was asked for meanwhile; then push the change."""
        assert live.loading is not None
        done = live.loading
        try:
            while True:
                live.again = False
                board = await self._load(live.competition_id)
                for found in live.held:
                    board.put(found)  # older states than the load change nothing
                live.held = []
                if not live.again:
                    break
            live.board = board
        except Exception as exc:
            if live.board is None:  # nothing to show: the next use tries again
                self.boards.pop(live.competition_id, None)
            live.loading = None
            done.set_exception(exc)
            done.exception()  # read here: a watcher that waited has it too
            log.warning("board %s not loaded: %s", live.competition_id, exc)
            return
        live.loading = None
        done.set_result(None)
        if live.version == 0:
            self.push(live)  # the first window: what snapshots show until the next push
        else:
            self._changed(live)

    def _changed(self, live: LiveBoard) -> None:
        """Push soon: at once if the last push is old enough, else when it is."""
        live.dirty = True
        if live.timer is not None:
            return
        wait = max(0.0, live.last_push + 1.0 / self.rate - time.monotonic())
        live.timer = asyncio.get_running_loop().call_later(wait, self.push, live)

    # ------------------------------------------------------------ pushing

    def push(self, live: LiveBoard) -> None:
        """Send what changed in the top window since the last push, encoded once, to every
        watcher; each authenticated one hears of its own place if that changed."""
        live.timer, live.dirty = None, False
        if live.version:  # the first window is no push: the first change goes out at once
            live.last_push = time.monotonic()
        if live.board is None or self.boards.get(live.competition_id) is not live:
            return
        window = live.board.entries(0, self.top)
        before = {e["participant"]["id"]: e for e in live.shown}
        entries = [e for e in window if before.get(e["participant"]["id"]) != e]
        ids = {e["participant"]["id"] for e in window}
        removed = [pid for pid in before if pid not in ids]
        total = len(live.board)
        if entries or removed or total != live.total or live.version == 0:
            previous = live.version
            live.version += 1
            live.shown, live.total = window, total
            self._fan_out(live, previous, entries, removed)
        for watcher in list(live.watchers):
            live.send_you(watcher)

    def _fan_out(
        self, live: LiveBoard, previous: int, entries: list[dict[str, Any]], removed: list[int]
    ) -> None:
        """One delta to the board's watchers, one change notice to everyone else's."""
        cid, version, total = live.competition_id, live.version, live.total
        if live.watchers:
            data = {"board": "public", "version": version, "previous": previous, "total": total}
            data = {**data, "entries": entries, "removed": removed}
            delta = frame("leaderboard.delta", cid, data)
            for watcher in list(live.watchers):
                watcher.send(delta)
        if self.everyone:
            notice = frame("leaderboard.changed", cid, {"version": version, "total": total})
            for watcher in list(self.everyone):
                watcher.send(notice)

    def close(self) -> None:
        """Stop pushing."""
        for live in self.boards.values():
            if live.timer is not None:
                live.timer.cancel()
        self.tasks.cancel()
