"""`@compete("classify")`: run a function on every competition of a type, from a notebook.

The decorated function competes with the notebook's connected client (or as its own
participant, `participant="name"`), through the client's `Competitor`. What each run did
(competition, score and rank, or the server's reason for a rejection) is shown in a widget
under the cell, updated from the background through widget state only: nothing is printed.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.core.error import UsageError

from crowdsource.client import Client, Competition, Competitor, CrowdsourceError, RunResult
from crowdsource.notebook import session
from crowdsource.notebook.display import html_table

__all__ = ["TYPES", "CompetingFunction", "compete", "running", "stop"]

TYPES = ("classify", "regress", "predict", "cluster")
RUN_COLUMNS = ["competition", "title", "ok", "state", "score", "rank", "error", "seconds"]
CompeteFn = Callable[[Competition], "pd.DataFrame | None"]

_REGISTRY: dict[tuple[str, str], CompetingFunction] = {}
_PARTICIPANTS: dict[tuple[str, str], Client] = {}
_LOCK = threading.Lock()


class RunsWidget(widgets.VBox):
    """The widget of a competing function: who, where, state, and a table of its runs."""

    def __init__(self, owner: CompetingFunction, children: list[widgets.Widget]) -> None:
        super().__init__(children)
        self.owner = owner

    def __repr__(self) -> str:
        return f"RunsWidget({self.owner.name!r} in {self.owner.type!r})"


class CompetingFunction:
    """A function that competes automatically; still callable like the function it wraps."""

    def __init__(
        self, fn: CompeteFn, *, type: str, name: str, client: Client, share_source: bool = False
    ) -> None:
        self.fn = fn
        self.type = type
        self.name = name
        self.client = client
        self.participant = (client.participant or {}).get("name") or "you"
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._lock = threading.Lock()
        self._shown = threading.Condition()
        self._shown_count = 0
        self._titles: dict[int, str] = {}
        self.competitor = Competitor(client, on_result=self._on_result, share_source=share_source)
        self.competitor.add(type, fn, name=name)
        self.stop_button = widgets.Button(description="Stop", icon="stop", tooltip="stop competing")
        self.stop_button.on_click(lambda _button: self.stop())
        self.header = widgets.HTML(self._header_html())
        self.runs = widgets.HTML(self._runs_html())
        self.widget = RunsWidget(self, [widgets.HBox([self.header, self.stop_button]), self.runs])

    def __call__(self, competition: Competition) -> pd.DataFrame | None:
        return self.fn(competition)

    def __repr__(self) -> str:
        count = len(self.competitor.results)
        return (
            f"<competing {self.name!r} in every {self.type!r} competition as"
            f" {self.participant!r}: {self.state}, {count} runs>"
        )

    def _ipython_display_(self) -> None:
        """Show the live widget of runs."""
        from IPython.display import display

        display(self.widget)

    # -- public --------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """`running` or `stopped`."""
        return "stopped" if self.competitor.stopped else "running"

    @property
    def results(self) -> pd.DataFrame:
        """Every run so far: competition, title, ok, state, score, rank, error, seconds."""
        rows = [self._row(result) for result in self.competitor.results]
        return pd.DataFrame(rows, columns=RUN_COLUMNS)

    def start(self) -> CompetingFunction:
        """Start listening for competitions and running the function (idempotent)."""
        self.competitor.start()
        self._refresh()
        return self

    def stop(self) -> None:
        """Stop competing (idempotent); a run in progress finishes alone."""
        self.competitor.stop(timeout=2.0)
        with _LOCK:
            if _REGISTRY.get((self.type, self.name)) is self:
                del _REGISTRY[(self.type, self.name)]
        self.stop_button.disabled = True
        self._refresh()

    def wait(self, count: int = 1, *, timeout: float = 60.0) -> bool:
        """Block until `count` runs have finished and are shown; False on timeout."""
        with self._shown:
            return self._shown.wait_for(lambda: self._shown_count >= count, timeout)

    # -- what the widget shows --------------------------------------------------------------------

    def _row(self, result: RunResult) -> dict[str, Any]:
        """One run as a row of the results table."""
        return {
            "competition": result.competition_id,
            "title": self._titles.get(result.competition_id, ""),
            "ok": result.ok,
            "state": result.state or ("failed" if not result.ok else ""),
            "score": result.score,
            "rank": result.rank,
            "error": result.error or "",
            "seconds": round(result.seconds, 2),
        }

    def _header_html(self) -> str:
        """The widget's heading: who competes where, and whether it still runs."""
        count = len(self.competitor.results)
        return (
            f"<b>{html.escape(self.name)}</b> competes in every"
            f" <code>{html.escape(self.type)}</code> competition as"
            f" <b>{html.escape(self.participant)}</b> &middot; {self.state} &middot; {count} runs"
        )

    def _runs_html(self) -> str:
        """The table of runs, newest last."""
        frame = self.results.drop(columns=["ok", "seconds"])
        return html_table(frame, empty="waiting for competitions...")

    def _refresh(self) -> None:
        """Bring the widget up to date (from any thread)."""
        with self._lock:
            self.header.value = self._header_html()
            self.runs.value = self._runs_html()

    def _on_result(self, result: RunResult) -> None:
        """Record a run's outcome in the widget (called from a worker thread)."""
        if result.competition_id not in self._titles:
            self._titles[result.competition_id] = self._title(result.competition_id)
        self._refresh()
        with self._shown:
            self._shown_count += 1
            self._shown.notify_all()

    def _title(self, competition_id: int) -> str:
        """A competition's title, or '' if the server cannot say."""
        try:
            return self.client.competition(competition_id).title
        except CrowdsourceError:
            return ""


def _participant_client(connected: Client, name: str) -> Client:
    """A client registered as participant `name` on the connected server (once per kernel)."""
    key = (connected.url, name)
    with _LOCK:
        existing = _PARTICIPANTS.get(key)
    if existing is not None:
        return existing
    client = Client(connected.url, progress=False)
    with session.usage_errors():
        client.register(name, save=False)
    with _LOCK:
        _PARTICIPANTS[key] = client
    return client


def _check_type(type: Any) -> str:
    """The competition type, or a UsageError saying how to write the decorator."""
    if callable(type):
        raise UsageError('write @compete("classify") (with the competition type), not @compete')
    if type not in TYPES:
        raise UsageError(f"unknown competition type {type!r}: use one of {', '.join(TYPES)}")
    return str(type)


def compete(
    type: str,
    *,
    name: str | None = None,
    participant: str | None = None,
    client: Client | None = None,
    show: bool = True,
    share_source: bool = False,
) -> Callable[[CompeteFn], CompetingFunction]:
    """Decorate a function to run on every open (and future) competition of `type`; each
    submission records its name and code digest, and with `share_source` its source (so
    that `crowdsource reproduce` can run it again: docs/provenance.md)."""
    kind = _check_type(type)

    def decorate(fn: CompeteFn) -> CompetingFunction:
        base = client or session.identified_client()
        who = _participant_client(base, participant) if participant else base
        fname = name or getattr(fn, "__name__", None) or "function"
        competing = CompetingFunction(
            fn, type=kind, name=fname, client=who, share_source=share_source
        )
        with _LOCK:
            previous = _REGISTRY.pop((kind, fname), None)
            _REGISTRY[(kind, fname)] = competing
        if previous is not None:
            previous.stop()
        if show:
            _show(competing)
        return competing.start()

    return decorate


def _show(competing: CompetingFunction) -> None:
    """Display the run widget under the current cell, when inside IPython."""
    from IPython import get_ipython
    from IPython.display import display

    if get_ipython() is not None:
        display(competing.widget)


def running() -> pd.DataFrame:
    """What competes in this kernel: name, type, participant, state, runs, last outcome."""
    with _LOCK:
        items = list(_REGISTRY.values())
    rows = [
        {
            "name": item.name,
            "type": item.type,
            "participant": item.participant,
            "state": item.state,
            "runs": len(item.competitor.results),
            "last": _last(item),
        }
        for item in items
    ]
    columns = ["name", "type", "participant", "state", "runs", "last"]
    return pd.DataFrame(rows, columns=columns)


def _last(item: CompetingFunction) -> str:
    """The outcome of a function's latest run, in a few words."""
    results = item.competitor.results
    if not results:
        return ""
    last = results[-1]
    if not last.ok:
        return f"competition {last.competition_id}: failed: {last.error}"
    score = "" if last.score is None else f" {last.score:.6g}"
    return f"competition {last.competition_id}: {last.state}{score}"


def stop(name: str | None = None) -> list[str]:
    """Stop one competing function by name (every one if None); return the names stopped."""
    with _LOCK:
        items = [item for item in _REGISTRY.values() if name in (None, item.name)]
    if name is not None and not items:
        known = ", ".join(sorted({item.name for item in _REGISTRY.values()})) or "none"
        raise UsageError(
            f"no function named {name!r} is competing (running: {known}); see `%crowdsource runs`"
        )
    for item in items:
        item.stop()
    return [item.name for item in items]
