"""Following the server's event stream, once for every Python consumer.

`Follower` keeps one WebSocket open in a daemon thread: it hands every event to its owner and,
on any close, reconnects after a jittered, doubling, capped delay until `stop()`. The server
greets every connection with `hello`, which tells the owner to resync (whatever it missed while
disconnected). `LiveBoard` follows one competition's public board on it: the snapshot after
`hello`, the deltas after that (a gap in versions asks the server for a fresh snapshot), and
the listener's own place (`leaderboard.you`). `Competitor`, `Client.wait_for_leaderboard` and
the notebook's `LeaderboardWidget` are built on these two.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from crowdsource.client.errors import ConnectionFailed, CrowdsourceError, Timeout
from crowdsource.client.events import EventStream
from crowdsource.client.models import Event, leaderboard_frame

if TYPE_CHECKING:
    import pandas as pd

    from crowdsource.client.client import Client

__all__ = ["Follower", "LiveBoard", "start_thread"]

log = logging.getLogger("crowdsource.client.live")

HISTORY_LIMIT = 5000  # points of "best score over time" kept; the oldest are dropped
DEFAULT_LIMIT = 100  # the top window a server sends by default (`--live-top`)
SNAPSHOT_GRACE = 0.5  # seconds a snapshot may take to follow hello before the board is read by REST
AROUND = 11  # entries of the listener's neighbourhood read when it ranks below the top window
AROUND_EVERY = 5.0  # seconds between two reads of the neighbourhood (each push may move a rank)


def start_thread(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Start a daemon thread in a copy of the current context (notebook output stays put)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


def _now() -> str:
    """The current UTC time in ISO form."""
    return datetime.now(timezone.utc).isoformat()


class Follower:
    """One event stream followed in a daemon thread, reconnecting until stop().

    `handle(event)` runs in that thread for every event; an exception from it (a resync that
    could not reach the server, say) drops the connection and reconnects. `tick()` also runs
    there, after every event and whenever the seconds it last returned have passed (None:
    only after events); owners use it to flush coalesced work. `on_status(text)` hears
    "connecting", "live", "reconnecting in 0.4 s: ..." and "stopped"."""

    def __init__(
        self,
        client: Client,
        *,
        handle: Callable[[Event], None],
        competition: int | None = None,
        tick: Callable[[], float | None] | None = None,
        on_status: Callable[[str], None] | None = None,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
        name: str = "crowdsource-events",
    ) -> None:
        self.client = client
        self.competition = competition
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.name = name
        self.connections = 0
        self._handle = handle
        self._tick = tick or (lambda: None)
        self._on_status = on_status or (lambda text: None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._stream: EventStream | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Follower:
        """Start following (idempotent); RuntimeError once stopped."""
        with self._lock:
            if self._stop.is_set():
                raise RuntimeError("this follower was stopped; make a new one")
            if self._thread is None:
                self._thread = start_thread(self._run, name=self.name)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following and close the connection (idempotent; from any thread)."""
        with self._lock:
            already = self._stop.is_set()
            self._stop.set()
            stream, thread = self._stream, self._thread
        if stream is not None:
            stream.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        if not already:
            self._on_status("stopped")

    @property
    def stopped(self) -> bool:
        """True once stop() was called."""
        return self._stop.is_set()

    @property
    def connected(self) -> bool:
        """True while the stream is connected."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Block until the stream is connected; False on timeout."""
        return self._connected.wait(timeout)

    def send(self, message: dict[str, Any]) -> None:
        """Send a frame on the current connection (ConnectionFailed if there is none)."""
        with self._lock:
            stream = self._stream
        if stream is None:
            raise ConnectionFailed("the event stream is not connected")
        stream.send(message)

    def _run(self) -> None:
        """Connect, follow, and reconnect after a growing delay, until stopped."""
        delay = self.min_backoff
        while not self._stop.is_set():
            self._on_status("connecting")
            connected, reason = self._follow_once()
            if connected:  # start the backoff afresh
                delay = self.min_backoff
            if self._stop.is_set():
                return
            wait = delay * random.uniform(0.5, 1.0)  # jitter: a restart is not a stampede
            self._on_status(f"reconnecting in {wait:.1f} s: {reason}")
            if self._stop.wait(wait):
                return
            delay = min(delay * 2, self.max_backoff)

    def _follow_once(self) -> tuple[bool, str]:
        """Connect once and handle events until the stream ends: whether it connected, and
        why it ended."""
        stream = EventStream(
            self.client.url,
            token=self.client.token,
            competition=self.competition,
            submissions="mine",  # no follower reads others'; board changes come either way
        )
        with self._lock:
            if self._stop.is_set():
                return False, "stopped"
            self._stream = stream
        try:
            stream.connect()
        except CrowdsourceError as exc:
            stream.close()
            return False, str(exc)
        self.connections += 1
        self._connected.set()
        self._on_status("live")
        try:
            self._receive_all(stream)
            return True, "stopped"
        except CrowdsourceError as exc:
            level = logging.DEBUG if isinstance(exc, ConnectionFailed) else logging.WARNING
            log.log(level, "event stream: %s; reconnecting", exc)
            return True, str(exc)
        except Exception as exc:
            log.exception("event stream handler failed; reconnecting")
            return True, f"{type(exc).__name__}: {exc}"
        finally:
            self._connected.clear()
            stream.close()

    def _receive_all(self, stream: EventStream) -> None:
        """Hand on events (and ticks) until the stream closes or stop()."""
        while not self._stop.is_set():
            try:
                event = stream.receive(timeout=self._tick())
            except Timeout:
                continue
            self._handle(event)


class LiveBoard:
    """One competition's public board, kept current from the event stream.

    Read `board` (snapshot-shaped: version, total, limit, title, metric, higher_is_better,
    entries), `history` (a point each time an entry's best score changes), `you` (the
    listener's own rank, if it has a token), `around` (its neighbourhood, when it ranks below
    the top window) and `status`. Callbacks registered with
    `on_change` run in the follower's thread, at most once per `interval` seconds."""

    def __init__(
        self,
        client: Client,
        competition_id: int,
        *,
        interval: float = 0.25,
        history_limit: int = HISTORY_LIMIT,
        min_backoff: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.client = client
        self.competition_id = int(competition_id)
        self.interval = interval
        self.resyncs = 0  # snapshots asked for after a gap in versions
        self._lock = threading.RLock()  # reentrant: a wait() predicate may read the properties
        self._changed = threading.Condition(self._lock)
        self._board: dict[str, Any] = _empty_board()
        self._history: deque[dict[str, Any]] = deque(maxlen=history_limit)
        self._history_count = 0
        self._best: dict[int, float] = {}
        self._you: dict[str, Any] | None = None
        self._around: list[dict[str, Any]] = []
        self._around_at: float | None = None  # when to read the neighbourhood again
        self._status = "not started"
        self._callbacks: list[Callable[[LiveBoard], None]] = []
        self._speaks_snapshots = False  # set by the first snapshot: hello then needs no REST
        self._refresh_at: float | None = None  # when to read by REST if no snapshot came
        self._awaiting_snapshot = False
        self._hello_on = 0  # the connection whose hello was seen
        self._pending = False
        self._last_flush = float("-inf")  # the first change is told at once
        self.follower = Follower(
            client,
            handle=self._on_event,
            competition=self.competition_id,
            tick=self._tick,
            on_status=self._set_status,
            min_backoff=min_backoff,
            max_backoff=max_backoff,
            name=f"crowdsource-board-{self.competition_id}",
        )

    def __repr__(self) -> str:
        board = self.board
        return (
            f"<LiveBoard competition {self.competition_id} version {board['version']},"
            f" {board['total']} entries, {self.status}>"
        )

    # -- public -------------------------------------------------------------------------------

    def start(self) -> LiveBoard:
        """Start following (idempotent)."""
        self.follower.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following (idempotent; from any thread); the state keeps its last values."""
        self.follower.stop(timeout)

    @property
    def board(self) -> dict[str, Any]:
        """The board as last known (a copy)."""
        with self._lock:
            return {**self._board, "entries": list(self._board["entries"])}

    @property
    def history(self) -> list[dict[str, Any]]:
        """Best-score points `{at, participant_id, name, score}`, oldest first (a copy)."""
        with self._lock:
            return list(self._history)

    @property
    def history_count(self) -> int:
        """How many history points were ever recorded (changes when `history` does)."""
        with self._lock:
            return self._history_count

    @property
    def you(self) -> dict[str, Any] | None:
        """The listener's own place `{version, participant_id, rank, score, total}`, if known."""
        with self._lock:
            return dict(self._you) if self._you else None

    @property
    def around(self) -> list[dict[str, Any]]:
        """The entries around the listener's own when it ranks below the top window (REST
        `around=me`, read again at most every few seconds); else empty (a copy)."""
        with self._lock:
            return list(self._around)

    @property
    def status(self) -> str:
        """What the follower does: live, connecting, reconnecting in 0.4 s: (why), stopped."""
        with self._lock:
            return self._status

    @property
    def version(self) -> int:
        """The board's version on the current connection."""
        with self._lock:
            return int(self._board["version"])

    def frame(self) -> pd.DataFrame:
        """The board as a frame: rank, participant, score, submissions, last time."""
        return leaderboard_frame({**self.board, "competition_id": self.competition_id})

    def on_change(self, callback: Callable[[LiveBoard], None], remove: bool = False) -> None:
        """Call `callback(live_board)` after changes (coalesced); or remove it."""
        with self._lock:
            if remove:
                self._callbacks = [c for c in self._callbacks if c != callback]
            else:
                self._callbacks.append(callback)

    def wait(
        self, until: Callable[[dict[str, Any]], bool], *, timeout: float | None = 30.0
    ) -> bool:
        """Block until `until(board)` holds; False on timeout or stop."""

        def ready() -> bool:
            return bool(until(self._board)) or self.follower.stopped

        with self._changed:
            self._changed.wait_for(ready, timeout)
            return bool(until(self._board))

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        """Fold one event into the board."""
        data = event.data
        if event.type == "hello":
            self._on_hello()
        elif event.type == "leaderboard.snapshot":
            self._speaks_snapshots = True
            self._replace(data, at=event.at)
        elif event.type == "leaderboard.delta":
            self._on_delta(data, at=event.at)
        elif event.type == "leaderboard.changed" and "entries" in data:
            self._replace(data, at=event.at)  # a server before live deltas
        elif event.type == "leaderboard.changed" and not self._speaks_snapshots:
            self.refresh()
        elif event.type == "leaderboard.you":
            with self._changed:
                self._you = dict(data)
                if self._around_at is None:
                    self._around_at = time.monotonic()  # at the next tick
                self._changed_locked()

    def _on_hello(self) -> None:
        """A (re)connection, or the server saying it may have missed events: resync."""
        first_on_connection = self._hello_on != self.follower.connections
        self._hello_on = self.follower.connections
        if self._speaks_snapshots and first_on_connection:
            return  # the snapshot follows the hello
        if self._speaks_snapshots:
            self._ask_snapshot()
        else:  # a server before live deltas sends no snapshot: then read the board by REST
            self._refresh_at = time.monotonic() + SNAPSHOT_GRACE

    def _on_delta(self, data: dict[str, Any], *, at: str | None) -> None:
        """Apply a delta in sequence; on a gap, ask for a snapshot and skip until it comes."""
        if self._awaiting_snapshot:
            return
        with self._changed:
            in_order = data.get("previous") == self._board["version"]
            if in_order:
                self._board = _apply_delta(self._board, data)
                self._record(data.get("entries", []), at=at or _now())
                self._changed_locked()
        if not in_order:
            self._ask_snapshot()

    def _ask_snapshot(self) -> None:
        """Ask the server for a fresh snapshot (the answer replaces the board)."""
        self._awaiting_snapshot = True
        self.resyncs += 1
        self.follower.send({"type": "snapshot"})

    def refresh(self) -> None:
        """Read the board once by REST (what a server without snapshots needs after hello)."""
        limit = int(self._board.get("limit") or DEFAULT_LIMIT)
        data = self.client._json(
            "GET",
            f"/competitions/{self.competition_id}/leaderboard",
            params={"board": "public", "limit": limit},
        )
        self._replace(data, at=None)

    def _replace(self, data: dict[str, Any], *, at: str | None) -> None:
        """Take a whole board (a snapshot, or one from before live deltas)."""
        with self._changed:
            self._board = _snapshot(data, self._board)
            self._awaiting_snapshot = False
            self._refresh_at = None
            self._record(self._board["entries"], at=at)
            self._changed_locked()

    def _record(self, entries: list[dict[str, Any]], *, at: str | None) -> None:
        """Add a history point for each entry whose best score is new (lock held)."""
        for entry in entries:
            score, pid = entry.get("score"), (entry.get("participant") or {}).get("id")
            if score is None or pid is None or self._best.get(pid) == score:
                continue
            seen = pid in self._best
            self._best[pid] = score
            when = at if seen and at else entry.get("last_submission_at") or at or _now()
            self._history.append(
                {"at": when, "participant_id": pid, "name": entry.get("name"), "score": score}
            )
            self._history_count += 1

    def _below(self) -> bool:
        """Whether the listener ranks below the top window (lock held)."""
        you, entries = self._you, self._board["entries"]
        if not you or you.get("rank") is None or you["rank"] <= len(entries):
            return False
        mine = you.get("participant_id")
        return all((e.get("participant") or {}).get("id") != mine for e in entries)

    def _read_around(self) -> None:
        """Read the neighbourhood by REST when below the top window, else drop it; again
        in a few seconds while below (a failed read is retried then)."""
        with self._changed:
            below = self._below()
            self._around_at = time.monotonic() + AROUND_EVERY if below else None
            if not below:
                if self._around:
                    self._around = []
                    self._changed_locked()
                return
        try:
            data = self.client._json(
                "GET",
                f"/competitions/{self.competition_id}/leaderboard",
                params={"board": "public", "around": "me", "limit": AROUND},
            )
        except CrowdsourceError as exc:
            log.debug("neighbourhood not read: %s", exc)
            return
        with self._changed:
            self._around = list(data.get("entries", [])) if self._below() else []
            self._changed_locked()

    # -- notifying -------------------------------------------------------------------------------

    def _set_status(self, text: str) -> None:
        """Keep the follower's status and tell the callbacks at once."""
        with self._changed:
            self._status = text
            self._changed_locked()
        self._flush(counts=False)  # rare (once a connection): the next board need not wait

    def _changed_locked(self) -> None:
        """Wake waiters and mark the callbacks due (lock held)."""
        self._pending = True
        self._changed.notify_all()

    def _tick(self) -> float | None:
        """Read by REST and run the callbacks when due; seconds until the next is due."""
        now = time.monotonic()
        if self._refresh_at is not None and now >= self._refresh_at:
            self.refresh()
        if self._around_at is not None and now >= self._around_at:
            self._read_around()
        waits = [t - now for t in (self._refresh_at, self._around_at) if t is not None]
        if self._pending:
            left = self._last_flush + self.interval - now
            if left <= 0:
                self._flush()
            else:
                waits.append(left)
        return max(0.0, min(waits)) if waits else None

    def _flush(self, *, counts: bool = True) -> None:
        """Run every callback once now (`counts`: towards the rate limit)."""
        with self._lock:
            self._pending = False
            if counts:
                self._last_flush = time.monotonic()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                log.exception("live board callback failed")


def _empty_board() -> dict[str, Any]:
    """A board before the first snapshot."""
    return {
        "version": 0,
        "total": 0,
        "limit": DEFAULT_LIMIT,
        "title": None,
        "metric": None,
        "higher_is_better": None,
        "entries": [],
    }


def _snapshot(data: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    """A snapshot-shaped board from a snapshot frame or a whole board (REST, old events)."""
    entries = list(data.get("entries", []))
    limit = int(data.get("limit") or previous.get("limit") or DEFAULT_LIMIT)
    version = data.get("version")
    return {
        "version": int(version) if version is not None else int(previous["version"]) + 1,
        "total": int(data.get("total", len(entries))),
        "limit": limit,
        "title": data.get("title", previous.get("title")),
        "metric": data.get("metric", previous.get("metric")),
        "higher_is_better": data.get("higher_is_better", previous.get("higher_is_better")),
        "entries": entries[:limit],
    }


def _order(entry: dict[str, Any]) -> tuple[bool, int, str]:
    """Board order: ranked entries by rank then name; unranked last."""
    rank = entry.get("rank")
    return (rank is None, rank or 0, str(entry.get("name") or ""))


def _apply_delta(board: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """The board after one in-sequence delta: removed dropped, entries upserted, re-sorted,
    cut to the window."""
    changed = {(e.get("participant") or {}).get("id"): e for e in delta.get("entries", [])}
    gone = set(delta.get("removed", [])) | set(changed)
    kept = [e for e in board["entries"] if (e.get("participant") or {}).get("id") not in gone]
    entries = sorted([*kept, *changed.values()], key=_order)[: board["limit"]]
    return {
        **board,
        "version": int(delta["version"]),
        "total": int(delta.get("total", board["total"])),
        "entries": entries,
    }
