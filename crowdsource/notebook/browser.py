"""`CompetitionBrowser`: list competitions, see one, download its template, submit a DataFrame."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import pandas as pd
from IPython.core.error import UsageError

from crowdsource.client import Client, Competition, CrowdsourceError
from crowdsource.notebook import session
from crowdsource.notebook.display import (
    SubmissionReport,
    competition_card,
    competitions_frame,
    html_table,
)

__all__ = ["CompetitionBrowser"]


def _user_namespace() -> dict[str, Any]:
    """The notebook's variables (empty outside IPython)."""
    from IPython import get_ipython

    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def _message(text: str, *, error: bool = False) -> str:
    """One line of feedback as HTML (red for an error)."""
    color = "#b00020" if error else "inherit"
    return f"<div style='color:{color}'>{html.escape(text)}</div>"


class CompetitionBrowser(widgets.VBox):
    """Browse the server's competitions; download a template; submit a DataFrame variable."""

    def __init__(
        self,
        *,
        client: Client | None = None,
        namespace: dict[str, Any] | None = None,
        preview_rows: int = 5,
    ) -> None:
        self.client = client or session.client()
        self.namespace = _user_namespace() if namespace is None else namespace
        self.preview_rows = preview_rows
        self.competition: Competition | None = None
        self.template: pd.DataFrame | None = None
        self.last_submission: Any = None
        self.picker = widgets.Dropdown(description="Competition", options=[])
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.details = widgets.HTML()
        self.preview = widgets.HTML()
        self.template_path = widgets.Text(description="Template", placeholder="file.csv")
        self.download_button = widgets.Button(description="Download template", icon="download")
        self.variable = widgets.Dropdown(description="Predictions", options=[])
        self.submit_button = widgets.Button(
            description="Submit", icon="upload", button_style="primary"
        )
        self.result = widgets.HTML()
        super().__init__(self._layout())
        self.picker.observe(self._on_pick, names="value")
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.download_button.on_click(lambda _b: self._guard(self.download_template))
        self.submit_button.on_click(lambda _b: self._guard(self.submit))
        self.refresh()

    def __repr__(self) -> str:
        return f"CompetitionBrowser({len(self.picker.options)} competitions)"

    def _layout(self) -> list[widgets.Widget]:
        """The widget's rows, top to bottom."""
        return [
            widgets.HBox([self.picker, self.refresh_button]),
            self.details,
            self.preview,
            widgets.HBox([self.template_path, self.download_button]),
            widgets.HBox([self.variable, self.submit_button]),
            self.result,
        ]

    # -- actions ---------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Reload the list of competitions and of DataFrame variables."""
        try:
            items = self.client.competitions()
        except CrowdsourceError as exc:
            self.result.value = _message(session.describe_error(exc), error=True)
            return
        frame = competitions_frame(items)
        current = self.picker.value
        self.picker.options = [
            (f"{row['id']}: {row['title']} ({row['type']}, {row['status']})", int(row["id"]))
            for row in frame.reset_index().to_dict("records")
        ]
        if current in frame.index:
            self.picker.value = current
        elif len(frame):
            self.picker.value = int(frame.index[0])
        self.variable.options = self.frames()

    def frames(self) -> list[str]:
        """The names of the notebook's DataFrame variables."""
        return sorted(
            name
            for name, value in self.namespace.items()
            if isinstance(value, pd.DataFrame) and not name.startswith("_")
        )

    def select(self, competition_id: int) -> Competition:
        """Show one competition's details and dataset preview."""
        with session.usage_errors(competition=competition_id):
            competition = self.client.competition(int(competition_id))
            preview = competition.dataset.head(self.preview_rows)
        self.competition = competition
        self.details.value = competition_card(competition)
        shown = f"dataset: {competition.rows} rows; first {len(preview)}:"
        self.preview.value = _message(shown) + html_table(preview, empty="empty dataset")
        self.template_path.value = f"competition-{competition.id}-template.csv"
        self.variable.options = self.frames()
        self.result.value = ""
        return competition

    def download_template(self, path: str | Path | None = None) -> Path:
        """Write the selected competition's template (ids, empty targets) to a CSV file."""
        competition = self._selected()
        target = Path(path or self.template_path.value or f"competition-{competition.id}.csv")
        self.template = competition.template()
        self.template.to_csv(target, index=False)
        self.result.value = _message(
            f"wrote {len(self.template)} rows to {target}; fill in"
            f" {', '.join(competition.targets)} and submit"
        )
        return target

    def submit(self, variable: str | None = None) -> SubmissionReport:
        """Submit the DataFrame held by a notebook variable; show score, rank and quota."""
        competition = self._selected()
        name = variable or self.variable.value
        if not name:
            raise UsageError("no DataFrame chosen: assign your predictions to a variable first")
        frame = session.namespace_frame(self.namespace, name)
        with session.usage_errors(competition=competition.id):
            report = SubmissionReport(self.client.submit(competition.id, frame))
        self.last_submission = report.submission
        self.result.value = report._repr_html_()
        return report

    # -- plumbing --------------------------------------------------------------------------------

    def _selected(self) -> Competition:
        """The selected competition; UsageError if none is."""
        if self.competition is None:
            raise UsageError("no competition selected: pick one in the list (or call select(ID))")
        return self.competition

    def _on_pick(self, change: dict[str, Any]) -> None:
        """Show the competition picked in the list."""
        if change.get("new") is not None:
            self._guard(lambda: self.select(int(change["new"])))

    def _guard(self, action: Any) -> None:
        """Run a button's action; show a mistake as a red line instead of raising."""
        try:
            action()
        except (UsageError, CrowdsourceError) as exc:
            self.result.value = _message(session.describe_error(exc), error=True)
