"""The live push of public boards: per competition a ranked board in memory, a version, the
top window last pushed, and its watchers. Changes are coalesced into at most `rate` pushes a
second; each push is encoded once and the same bytes are handed to every watcher."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from crowdsource.server.events import Event
from crowdsource.server.ranked import RankedBoard, Unknown
from crowdsource.server.tasks import Background
from crowdsource.times import iso, utcnow

log = logging.getLogger(__name__)
Loader = Callable[[int], Awaitable[RankedBoard]]

# What of each event everyone may see: None for all of it (the host's public text, public
# boards), else the fields named. What a participant sent (a failed submission's reason
# quotes their predicted values) goes to that participant only; an event type not listed
# here shows nobody but its owner any data.
PUBLIC: dict[str, frozenset[str] | None] = {
    "competition.created": None,
    "competition.closed": None,
    "competition.resolved": None,
    "competition.updated": None,
    "competition.deleted": None,
    "leaderboard.changed": None,
    "leaderboard.snapshot": None,  # public boards (written by `LiveBoards`, never filtered)
    "leaderboard.delta": None,
    "leaderboard.you": None,  # sent to the listener it is about alone
    "submission.scored": frozenset({"submission_id", "participant", "state", "public_score"}),
    "submission.failed": frozenset({"submission_id", "participant", "state", "public_score"}),
}
# Sent to a board's watchers with its next push (their owner's at once): one write per
# watcher per push, however many submissions arrive.
BATCHED = frozenset({"submission.scored", "submission.failed"})


def owner_id(event: Event) -> int | None:
    """The participant an event is about, if it is about one participant's submission."""
    who = event.data.get("participant")
    return who.get("id") if isinstance(who, dict) else None


def shown(event: Event, *, whole: bool) -> Event:
    """The event whole (for the participant it is about), or only its public fields."""
    public = PUBLIC.get(event.type, frozenset())
    if whole or public is None:
        return event
    data = {k: v for k, v in event.data.items() if k in public}
    return Event(event.type, event.competition_id, data, event.at)


_last: list[Any] = [None, {}]  # the event being handed out, and its frames


def encoded(event: Event, *, whole: bool) -> bytes:
    """An event's WebSocket frame as its owner (`whole`) or anyone else sees it, built once
    per event however many listen (listeners are handed one event at a time)."""
    if _last[0] is not event:
        _last[:] = [event, {}]
    found: dict[bool, bytes] = _last[1]
    if whole not in found:
        found[whole] = ws_frame(shown(event, whole=whole).to_json().encode())
    return found[whole]


def ws_frame(payload: bytes) -> bytes:
    """A server's WebSocket text frame (final, unmasked) around a payload: built once, the
    same bytes are written to every listener."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size <= 0xFFFF:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class Watcher(Protocol):
    """An event-stream connection: takes WebSocket frames without waiting."""

    @property
    def viewer_id(self) -> int | None:
        """The authenticated listener's participant id (None: anonymous)."""

    @property
    def others(self) -> bool:
        """Whether it hears of others' submissions (`submissions=all`) or only its own."""

    def write_frames(self, frames: bytes) -> None:
        """Queue frames (a slow connection is closed, never waited for)."""


def frame(kind: str, competition_id: int, data: dict[str, Any]) -> bytes:
    """One event's WebSocket frame."""
    body = {"type": kind, "competition_id": competition_id, "data": data, "at": iso(utcnow())}
    return ws_frame(json.dumps(body).encode())


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
        self.news: list[tuple[int | None, bytes]] = []  # submission events for the next push

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

    def you_frame(self, watcher: Watcher, *, always: bool = False) -> bytes:
        """An authenticated watcher's own place, if it changed (or `always`); else b""."""
        if watcher.viewer_id is None:
            return b""
        you = self.you(watcher.viewer_id)
        if not always and self.watchers.get(watcher) == you:
            return b""
        self.watchers[watcher] = you
        pid, rank, score, total = you
        data = {"version": self.version, "participant_id": pid, "rank": rank, "score": score}
        return frame("leaderboard.you", self.competition_id, {**data, "total": total})


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

    async def _keep(self, competition_id: int) -> None:
        """Load a board to keep it live (a failure is logged by the load)."""
        with contextlib.suppress(Exception):
            await self.ready(competition_id)

    async def watch(self, competition_id: int, watcher: Watcher) -> None:
        """Send a watcher the board's snapshot (and its own place), then every push."""
        live = await self.ready(competition_id)
        live.watchers[watcher] = None
        watcher.write_frames(live.snapshot(self.top) + live.you_frame(watcher, always=True))

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
                self.tasks.spawn(self._keep(competition_id))
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

    def announce(self, event: Event) -> None:
        """A submission event for a board's watchers: sent with its next push (its owner's
        own streams have it whole at once)."""
        live = self.boards.get(event.competition_id)
        if live is None or not live.watchers:
            return
        live.news.append((owner_id(event), encoded(event, whole=False)))
        self._changed(live)

    def reload(self, competition_id: int) -> None:
        """The board changed as a whole: read it again (if it is live here)."""
        live = self.boards.get(competition_id)
        if live is not None:
            self._reload(live)
        elif self.everyone:
            self.tasks.spawn(self._keep(competition_id))

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
                    try:
                        board.put(found)  # older states than the load change nothing
                    except Unknown:  # recorded after the load read the names: again
                        live.again = True
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
        delta = b""
        if entries or removed or total != live.total or live.version == 0:
            previous = live.version
            live.version += 1
            live.shown, live.total = window, total
            delta = self._delta(live, previous, entries, removed)
        news, live.news = live.news, []
        self._fan_out(live, news, delta)

    def _delta(
        self, live: LiveBoard, previous: int, entries: list[dict[str, Any]], removed: list[int]
    ) -> bytes:
        """The delta frame for the board's watchers; a change notice to everyone else's."""
        cid, version, total = live.competition_id, live.version, live.total
        if self.everyone:
            notice = frame("leaderboard.changed", cid, {"version": version, "total": total})
            for watcher in list(self.everyone):
                watcher.write_frames(notice)
        if not live.watchers:
            return b""
        data = {"board": "public", "version": version, "previous": previous, "total": total}
        data = {**data, "entries": entries, "removed": removed}
        return frame("leaderboard.delta", cid, data)

    def _fan_out(self, live: LiveBoard, news: list[tuple[int | None, bytes]], delta: bytes) -> None:
        """One write per watcher: the submission events since the last push (but its own,
        which it had at once; none to one that asked for its own only), the delta, and its
        own place if that changed."""
        common = b"".join(f for _, f in news) + delta
        owners = {owner for owner, _ in news}
        for watcher in list(live.watchers):
            out = common if watcher.others else delta
            if watcher.viewer_id is not None:
                if watcher.others and watcher.viewer_id in owners:
                    out = b"".join(f for o, f in news if o != watcher.viewer_id) + delta
                out += live.you_frame(watcher)
            if out:
                watcher.write_frames(out)

    def close(self) -> None:
        """Stop pushing."""
        for live in self.boards.values():
            if live.timer is not None:
                live.timer.cancel()
        self.tasks.cancel()
