"""How notebook objects look: competition cards, submission reports, small HTML tables."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from crowdsource.client import Competition, Submission, models

__all__ = [
    "SubmissionReport",
    "competition_card",
    "competition_details",
    "competitions_frame",
    "direction",
    "html_table",
]

DETAIL_FIELDS = (
    "id",
    "title",
    "type",
    "metric",
    "higher_is_better",
    "id_column",
    "targets",
    "classes",
    "status",
    "rows",
    "answer_rows",
    "closes_at",
    "daily_limit",
    "public_fraction",
)


def competition_details(competition: Competition) -> pd.Series:
    """The public details of a competition worth showing (no volatile timestamps)."""
    values: dict[str, Any] = {name: getattr(competition, name) for name in DETAIL_FIELDS}
    values["host"] = competition.host_name
    if competition.description:
        values["description"] = competition.description
    values = {k: ", ".join(map(str, v)) if isinstance(v, list) else v for k, v in values.items()}
    return pd.Series(values, name=f"competition {competition.id}", dtype=object)


def competition_card(competition: Competition) -> str:
    """A competition's details as an HTML table."""
    rows = competition_details(competition)
    body = "".join(
        f"<tr><th style='text-align:left'>{html.escape(str(key))}</th>"
        f"<td style='text-align:left'>{html.escape(str(value))}</td></tr>"
        for key, value in rows.items()
    )
    return f"<table>{body}</table>"


def competitions_frame(items: Sequence[Competition]) -> pd.DataFrame:
    """The columns a person wants when listing competitions."""
    columns = ("id", "title", "type", "metric", "status", "rows", "answer_rows", "host")
    return models.competitions_frame(items, columns).set_index("id")


class SubmissionReport:
    """A submission as a notebook shows it: one line of text, or a small HTML summary."""

    def __init__(self, submission: Submission) -> None:
        self.submission = submission

    def __repr__(self) -> str:
        return str(self.submission)

    def _repr_html_(self) -> str:
        """The same line, with the score and rank in bold."""
        sub = self.submission
        parts = [f"<b>submission {sub.id}</b> to competition {sub.competition_id}: {sub.state}"]
        if sub.public_score is not None:
            parts.append(f"public score <b>{sub.public_score:.6g}</b>")
        if sub.rank is not None:
            parts.append(f"rank <b>{sub.rank}</b>")
        text = ", ".join(parts)
        if sub.reason:
            text += f" ({html.escape(sub.reason)})"
        return f"<div>{text}; {html.escape(sub.quota)}</div>"


def html_table(frame: pd.DataFrame, *, empty: str) -> str:
    """A frame as a compact HTML table (escaped), or a line saying it is empty."""
    if frame.empty:
        return f"<i>{html.escape(empty)}</i>"
    text = frame.to_html(
        index=False, escape=True, border=0, na_rep="", float_format="{:.6g}".format
    )
    cell = "style='padding:2px 12px;text-align:right'"
    return text.replace("<td>", f"<td {cell}>").replace("<th>", f"<th {cell}>")


def direction(higher_is_better: bool | None) -> str:
    """How a metric ranks, in words."""
    if higher_is_better is None:
        return "direction unknown"
    return "higher is better" if higher_is_better else "lower is better"
