"""`LeaderboardWidget`: a live Plotly leaderboard fed by the server's event stream.

Two daemon threads per widget, both started in a copy of the starting cell's context: a reader
that blocks on the WebSocket and queues events, and a renderer that takes a burst of queued
events, folds them into the model, and applies the result once, inside `fig.batch_update()`
and under the widget's lock. Nothing polls; nothing prints from the background.
"""

from __future__ import annotations

import atexit
import contextvars
import html
import queue
import threading
import weakref
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import ipywidgets as widgets
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crowdsource.client import Client, Competition, CrowdsourceError, Event, EventStream
from crowdsource.client.models import leaderboard_frame
from crowdsource.notebook import session
from crowdsource.notebook.display import direction, html_table

__all__ = ["LeaderboardWidget", "start_thread", "stop_all"]

_LIVE: weakref.WeakSet[LeaderboardWidget] = weakref.WeakSet()
_STOP = object()
PALETTE = px.colors.qualitative.Plotly


def start_thread(target: Callable[..., Any], *args: Any, name: str) -> threading.Thread:
    """Start a daemon thread in a copy of the current context (its output stays with its cell)."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=name, daemon=True)
    thread.start()
    return thread


def stop_all() -> None:
    """Stop every live leaderboard of this kernel."""
    for widget in list(_LIVE):
        widget.stop()


atexit.register(stop_all)


def _timestamp(value: str | None) -> pd.Timestamp:
    """An ISO time (or now) as a UTC timestamp."""
    if not value:
        return pd.Timestamp(datetime.now(timezone.utc))
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _resolve(competition: Competition | int, client: Client | None) -> Competition:
    """The competition object, fetched with the given (or the notebook's) client if needed."""
    if isinstance(competition, Competition):
        if client is None and competition.client is not None:
            return competition
        competition_id = competition.id
    else:
        competition_id = int(competition)
    connected = client or session.client()
    with session.usage_errors(competition=competition_id):
        return connected.competition(competition_id)


class LeaderboardWidget(widgets.VBox):
    """A live leaderboard: best score per participant ranked, score over time, and a table."""

    def __init__(
        self,
        competition: Competition | int,
        *,
        client: Client | None = None,
        live: bool = True,
        interval: float = 0.15,
    ) -> None:
        self.competition = _resolve(competition, client)
        self.client: Client = client or self.competition.client or session.client()
        self.interval = interval
        self.version = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._events: queue.Queue[Any] = queue.Queue()
        self._stream: EventStream | None = None
        self._board = leaderboard_frame({})
        self._history: dict[str, list[tuple[pd.Timestamp, float]]] = {}
        self._lines: dict[str, int] = {}
        self._colors: dict[str, str] = {}
        self.title = widgets.HTML(self._title_html())
        self.figure = self._make_figure()
        self.table = widgets.HTML()
        self.status = widgets.HTML()
        super().__init__([self.title, self.figure, self.table, self.status])
        with session.usage_errors(competition=self.competition.id):
            self._take(self.client.leaderboard(self.competition.id), at=None)
        self._render("connecting..." if live else "static (not live)")
        if live:
            _LIVE.add(self)
            start_thread(self._read, name=f"crowdsource-board-{self.competition.id}-events")
            start_thread(self._apply_loop, name=f"crowdsource-board-{self.competition.id}")

    def __repr__(self) -> str:
        state = "live" if self.live else "not live"
        return (
            f"LeaderboardWidget(competition {self.competition.id} {self.competition.title!r},"
            f" {len(self._board)} participants, {state})"
        )

    # -- public -------------------------------------------------------------------------------

    @property
    def board(self) -> pd.DataFrame:
        """The leaderboard as last shown: rank, participant, score, submissions, last time."""
        with self._lock:
            return self._board.copy()

    @property
    def history(self) -> pd.DataFrame:
        """Every best score seen per participant, with when: participant, at, score."""
        with self._lock:
            rows = [
                {"participant": name, "at": at, "score": score}
                for name, points in self._history.items()
                for at, score in points
            ]
        return pd.DataFrame(rows, columns=["participant", "at", "score"])

    @property
    def live(self) -> bool:
        """True until stop()."""
        return not self._stop.is_set() and self in _LIVE

    def wait(
        self,
        *,
        entries: int | None = None,
        version: int | None = None,
        until: Callable[[pd.DataFrame], bool] | None = None,
        timeout: float = 30.0,
    ) -> bool:
        """Block until the shown board has `entries` rows / passes `until` / a newer version."""

        def ready() -> bool:
            if version is not None and self.version <= version:
                return False
            if entries is not None and len(self._board) < entries:
                return False
            return until is None or bool(until(self._board))

        with self._changed:
            return self._changed.wait_for(ready, timeout)

    def stop(self) -> None:
        """Stop following the event stream (idempotent); the figure keeps its last state."""
        if self._stop.is_set():
            return
        self._stop.set()
        _LIVE.discard(self)
        self._events.put(_STOP)
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        self._set_status("stopped")

    # -- the figure ------------------------------------------------------------------------------

    def _title_html(self) -> str:
        """The heading: title, metric and its direction."""
        comp = self.competition
        ranks = direction(comp.higher_is_better)
        return (
            f"<b>{html.escape(comp.title or f'competition {comp.id}')}</b>"
            f" &middot; competition {comp.id} &middot; {html.escape(comp.metric)}" + f" ({ranks})"
        )

    def _make_figure(self) -> go.FigureWidget:
        """Two panels: best score per participant (ranked bars) and best score over time."""
        base = make_subplots(
            rows=1,
            cols=2,
            column_widths=[0.4, 0.6],
            horizontal_spacing=0.14,
            subplot_titles=("best score, ranked", "best score over time"),
        )
        base.add_trace(
            go.Bar(x=[], y=[], orientation="h", text=[], textposition="auto", showlegend=False),
            row=1,
            col=1,
        )
        base.update_yaxes(autorange="reversed", row=1, col=1)
        base.update_xaxes(title_text=self.competition.metric, row=1, col=1)
        base.update_yaxes(title_text=self.competition.metric, row=1, col=2)
        base.update_layout(height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10})
        return go.FigureWidget(base)

    def _line(self, name: str) -> int:
        """The index of a participant's line trace, adding it on first sight."""
        if name not in self._lines:
            self.figure.add_trace(
                go.Scatter(
                    x=[],
                    y=[],
                    mode="lines+markers",
                    line={"shape": "hv", "color": self._color(name)},
                    name=name,
                ),
                row=1,
                col=2,
            )
            self._lines[name] = len(self.figure.data) - 1
        return self._lines[name]

    def _color(self, name: str) -> str:
        """One color per participant, the same in both panels."""
        if name not in self._colors:
            self._colors[name] = PALETTE[len(self._colors) % len(PALETTE)]
        return self._colors[name]

    def _render(self, status: str | None = None) -> None:
        """Show the current model: bars, lines and table, in one batch under the lock."""
        with self._lock:
            frame = self._board
            lines = {name: self._line(name) for name in self._history}
            with self.figure.batch_update():
                bars = self.figure.data[0]
                bars.x = frame["score"].tolist()
                bars.y = frame["participant"].tolist()
                bars.text = [f"#{rank}" for rank in frame["rank"]]
                bars.marker.color = [self._color(str(name)) for name in frame["participant"]]
                for name, index in lines.items():
                    points = self._history[name]
                    self.figure.data[index].x = [at.to_pydatetime() for at, _ in points]
                    self.figure.data[index].y = [score for _, score in points]
            self.table.value = html_table(self._table_frame(), empty="no scored submissions yet")
            if status is not None:
                self.status.value = f"<small>{html.escape(status)}</small>"
            self.version += 1
            self._changed.notify_all()

    def _table_frame(self) -> pd.DataFrame:
        """The board's columns a person reads."""
        columns = ["rank", "participant", "score", "submissions", "last_submission_at"]
        frame = self._board[columns].rename(columns={"last_submission_at": "last submission (UTC)"})
        stamps = pd.to_datetime(frame["last submission (UTC)"], utc=True, errors="coerce")
        frame["last submission (UTC)"] = stamps.dt.strftime("%Y-%m-%d %H:%M:%S")
        return frame

    def _set_status(self, text: str) -> None:
        """Show one line of status under the table."""
        with self._lock:
            self.status.value = f"<small>{html.escape(text)}</small>"

    # -- the model ---------------------------------------------------------------------------------

    def _take(self, board: pd.DataFrame, *, at: str | None) -> None:
        """Make `board` the current board and extend each participant's score history."""
        with self._lock:
            self._board = board.reset_index(drop=True)
            for entry in board.to_dict("records"):
                score = entry["score"]
                if score is None or pd.isna(score):
                    continue
                when = _timestamp(at or entry["last_submission_at"])
                points = self._history.setdefault(str(entry["participant"]), [])
                when = max(when, points[-1][0]) if points else when
                if not points or points[-1][1] != float(score):
                    points.append((when, float(score)))

    def _fold(self, event: Event) -> str | None:
        """Fold one event into the model; return a status line for it, if any."""
        if event.type == "hello":
            self._take(self.client.leaderboard(self.competition.id), at=None)
            return "live"
        if event.type == "leaderboard.changed":
            board = (
                leaderboard_frame(event.data)
                if "entries" in event.data
                else self.client.leaderboard(self.competition.id)
            )
            self._take(board, at=event.at)
            return None
        return _describe(event)

    # -- the threads -------------------------------------------------------------------------

    def _read(self) -> None:
        """Queue events from the stream; reconnect with backoff until stopped."""
        delay = 0.1
        while not self._stop.is_set():
            stream = EventStream(
                self.client.url, token=self.client.token, competition=self.competition.id
            )
            try:
                self._follow(stream)
                delay = 0.1
            except CrowdsourceError as exc:
                self._events.put(Event("status", data={"text": f"reconnecting: {exc}"}))
            finally:
                stream.close()
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _follow(self, stream: EventStream) -> None:
        """Connect once and queue every event until the stream ends."""
        stream.connect()
        with self._lock:
            self._stream = stream
        if self._stop.is_set():
            return
        for event in stream:
            self._events.put(event)

    def _apply_loop(self) -> None:
        """Take bursts of events and show each burst's outcome once (at most ~1/interval Hz)."""
        while True:
            burst = self._burst()
            if burst is None:
                return
            status = None
            for event in burst:
                status = self._safe_fold(event) or status
            self._render(status)
            if self._stop.wait(self.interval):
                return

    def _burst(self) -> list[Event] | None:
        """Block for one event, then take whatever else is already queued; None when stopped."""
        first = self._events.get()
        burst = [first]
        while True:
            try:
                burst.append(self._events.get_nowait())
            except queue.Empty:
                break
        if any(item is _STOP for item in burst):
            return None
        return burst

    def _safe_fold(self, event: Event) -> str | None:
        """Fold an event; a failed resync becomes a status line rather than a dead thread."""
        if event.type == "status":
            return str(event.data.get("text", ""))
        try:
            return self._fold(event)
        except CrowdsourceError as exc:
            return f"could not refresh: {exc}"


def _describe(event: Event) -> str | None:
    """A status line for the events that are news on their own."""
    data = event.data
    who = (data.get("participant") or {}).get("name", "someone")
    if event.type == "submission.scored":
        score = data.get("public_score")
        if score is None:
            return f"{who} submitted ({data.get('state')})"
        return f"{who} scored {score:.6g}"
    if event.type == "submission.failed":
        reason = data.get("reason")  # its owner's streams only
        return f"{who}'s submission failed" + (f": {reason}" if reason else "")
    if event.type == "competition.resolved":
        known, rescored = data.get("answer_rows"), data.get("rescored")
        return f"answer rows arrived ({known} known); {rescored} re-scored"
    if event.type == "competition.closed":
        return "the competition closed"
    return None
