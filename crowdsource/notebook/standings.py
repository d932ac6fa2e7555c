"""Standings as a chart: each function's (or participant's) rank round by round, the best
few, names as text (escaped: Plotly would read tags in them as markup)."""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go

__all__ = ["standings_figure"]

SHOWN = 10  # lines on the chart: the best rows; the table has them all


def label(row: pd.Series) -> str:
    """A row's name: participant, and function with its version."""
    name = str(row["participant"])
    if "function" in row:
        name += f": {row['function']} v{row['version']}"
    return html.escape(name)


def standings_figure(frame: pd.DataFrame, *, shown: int = SHOWN) -> go.Figure:
    """Rank over rounds (1 at the top) for the best `shown` rows of a standings frame."""
    rounds = frame.attrs.get("rounds", [])
    titles = {r["competition_id"]: f"{r['competition_id']}: {r['title']}" for r in rounds}
    order = [titles[r["competition_id"]] for r in rounds]
    fig = go.Figure()
    ranks_of = frame.attrs.get("ranks", [])[:shown]
    for (_, row), ranks in zip(frame.head(shown).iterrows(), ranks_of, strict=True):
        fig.add_scatter(
            x=[titles.get(r["competition_id"], str(r["competition_id"])) for r in ranks],
            y=[r["rank"] for r in ranks],
            customdata=[r["of"] for r in ranks],
            mode="lines+markers",
            name=label(row),
            hovertemplate="%{x}<br>rank %{y} of %{customdata}<extra>%{fullData.name}</extra>",
        )
    what = frame.attrs.get("of", "functions")
    fig.update_layout(
        title=f"{what} in every {html.escape(str(frame.attrs.get('type')))} round: rank by round",
        xaxis={"title": "round", "categoryorder": "array", "categoryarray": order},
        yaxis={"title": "rank (1 = best)", "autorange": "reversed", "dtick": 1},
        title_font_size=13,
    )
    return fig
