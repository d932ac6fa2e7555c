"""The crowd's ensemble as a chart: the blend's score as k grows, each member's own score
beside it (names as text), the best single member marked, so the host sees at a glance
whether the crowd beats its best member."""

from __future__ import annotations

import plotly.graph_objects as go

from crowdsource.client.models import Ensemble
from crowdsource.notebook.display import direction

__all__ = ["ensemble_figure"]


def ensemble_figure(found: Ensemble) -> go.Figure:
    """Score of the blend of the top k against k, and each k-th member's own score."""
    column = found.score_column
    scores = found.scores
    fig = go.Figure()
    fig.add_scatter(
        x=scores["k"], y=scores[column], mode="lines+markers", name="blend of the top k"
    )
    fig.add_scatter(
        x=scores["k"],
        y=scores["member_score"],
        mode="markers+text",
        text=scores["member"],
        textposition="top center",
        name="the k-th member alone",
    )
    best = found.best_member
    if best is not None:
        fig.add_hline(
            y=best[column],
            line_dash="dash",
            annotation_text=f"best member: {best['name']}",
            annotation_position="bottom right",
        )
    board = "private" if found.closed else "public"
    fig.update_layout(
        title=found.summary,
        xaxis_title="k (entries blended, best-ranked first)",
        yaxis_title=f"{found.metric} on the {board} rows ({direction(found.higher_is_better)})",
        xaxis={"dtick": 1},
        title_font_size=13,
    )
    return fig
