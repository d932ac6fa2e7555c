"""`LeaderboardWidget`: a live leaderboard in a notebook, drawn by the browser from synced state.

The widget is an anywidget. Its state lives in synced traitlets (the board as a snapshot, the
best-score history, the viewer's own id, place and neighbourhood, a status line); the kernel
keeps them current through a `LiveBoard` (crowdsource.client.live: the client's one event
follower), at most four times a second. The browser module (crowdsource/static/widget.js, built
from extension/src/widget.ts) draws the table and the Plotly chart from that state, so a page
reload or a second view of the output shows the current board at once; it may also follow the
server's stream itself. No thread writes HTML, and the kernel never imports Plotly for this
widget.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from crowdsource.client.live import LiveBoard
from crowdsource.notebook import session

if TYPE_CHECKING:
    import pandas as pd

    from crowdsource.client import Client, Competition

__all__ = ["ESM", "LeaderboardWidget", "stop_all"]

ESM = Path(__file__).resolve().parent.parent / "static" / "widget.js"
_LIVE: weakref.WeakSet[LeaderboardWidget] = weakref.WeakSet()


def stop_all() -> None:
    """Stop every live leaderboard of this kernel."""
    for widget in list(_LIVE):
        widget.stop()


atexit.register(stop_all)


def _browser_module() -> str:
    """The browser side's ES module (a build output: say how to build it if it is missing)."""
    try:
        return ESM.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RuntimeError(
            f"the leaderboard widget's browser module {ESM} is missing: in a source checkout"
            " run `jlpm install && jlpm build`; otherwise reinstall crowdsource"
        ) from None


def _resolve(competition: Competition | int, client: Client | None) -> Competition:
    """The competition object, fetched with the given (or the notebook's) client."""
    from crowdsource.client import Competition

    competition_id = competition.id if isinstance(competition, Competition) else int(competition)
    if client is None and isinstance(competition, Competition):
        client = competition.client
    connected = client or session.client()
    with session.usage_errors(competition=competition_id):
        return connected.competition(competition_id)


class LeaderboardWidget(anywidget.AnyWidget):
    """A live leaderboard: the top of the board ranked, best scores over time, your place."""

    server_url = traitlets.Unicode("", help="the server's base URL as the kernel reaches it").tag(
        sync=True
    )
    competition_id = traitlets.Int(0).tag(sync=True)
    competition = traitlets.Dict(help="the competition's public view").tag(sync=True)
    board = traitlets.Dict(
        help="{version, total, limit, title, metric, higher_is_better, entries}"
    ).tag(sync=True)
    history: traitlets.List[dict[str, Any]] = traitlets.List(
        help="{at, participant_id, name, score} per best-score change"
    ).tag(sync=True)
    me = traitlets.Int(0, help="the kernel's participant id (0: anonymous)").tag(sync=True)
    you = traitlets.Dict(
        help="the kernel's own place {version, participant_id, rank, score, total}, if any"
    ).tag(sync=True)
    around: traitlets.List[dict[str, Any]] = traitlets.List(
        help="the entries around the kernel's own when it ranks below the top window"
    ).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)

    @property
    def _esm(self) -> str:  # read when a widget is made, so a missing build is one clear error
        return _browser_module()

    def __init__(
        self,
        competition: Competition | int,
        *,
        client: Client | None = None,
        live: bool = True,
        interval: float = 0.25,
        first_board: float = 5.0,
    ) -> None:
        found = _resolve(competition, client)
        self.client: Client = client or found.client or session.client()
        super().__init__(
            server_url=self.client.url,
            competition_id=found.id,
            competition=found.raw,
            me=int((self.client.participant or {}).get("id") or 0),
        )
        self._changed = threading.Condition()
        self._history_shown = -1
        self._live = LiveBoard(self.client, found.id, interval=interval)
        self._live.on_change(self._show)
        if live:
            _LIVE.add(self)
            self._live.start()  # the first board, within `first_board` s, is there on return:
            self._wait_shown(lambda: self.board.get("version", 0) > 0, first_board)
            return
        with session.usage_errors(competition=found.id):
            self._live.refresh()
        self._show(self._live)
        self.status = "static (not live)"

    def __repr__(self) -> str:
        title = self.competition.get("title")
        state = "live" if self.live else "not live"
        return (
            f"LeaderboardWidget(competition {self.competition_id} {title!r},"
            f" {self.board.get('total', 0)} participants, {state})"
        )

    # -- public -------------------------------------------------------------------------------

    @property
    def frame(self) -> pd.DataFrame:
        """The board as shown: rank, participant, score, submissions, last time."""
        from crowdsource.client.models import leaderboard_frame

        return leaderboard_frame({**self.board, "competition_id": self.competition_id})

    @property
    def history_frame(self) -> pd.DataFrame:
        """The best-score history as shown: participant, at, score."""
        import pandas as pd

        rows = [
            {"participant": p["name"], "at": pd.Timestamp(p["at"]), "score": p["score"]}
            for p in self.history
        ]
        return pd.DataFrame(rows, columns=["participant", "at", "score"])

    @property
    def live(self) -> bool:
        """True until stop() (False for a static board)."""
        return self in _LIVE and not self._live.follower.stopped

    def wait(
        self,
        *,
        entries: int | None = None,
        until: Callable[[pd.DataFrame], bool] | None = None,
        timeout: float = 30.0,
    ) -> bool:
        """Block until the shown board has `entries` entries and passes `until(frame)`."""

        def ready() -> bool:
            if entries is not None and int(self.board.get("total", 0)) < entries:
                return False
            return until is None or bool(until(self.frame))

        return self._wait_shown(ready, timeout)

    def _wait_shown(self, ready: Callable[[], bool], timeout: float) -> bool:
        """Block until `ready()` holds for the traitlets; False on timeout."""
        with self._changed:
            return self._changed.wait_for(ready, timeout)

    def stop(self) -> None:
        """Stop following the server (idempotent); the board keeps its last state."""
        _LIVE.discard(self)
        self._live.stop()

    # -- keeping the traitlets current ------------------------------------------------------------

    def _show(self, live: LiveBoard) -> None:
        """Copy the live board into the traitlets, as one update (the follower's thread)."""
        you = live.you or {}
        with self.hold_sync():
            self.board = live.board
            if live.history_count != self._history_shown:
                self._history_shown = live.history_count
                self.history = live.history
            if you.get("participant_id"):
                self.me = int(you["participant_id"])
            self.you = you
            self.around = live.around
            self.status = live.status
        with self._changed:
            self._changed.notify_all()
