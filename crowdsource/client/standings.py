"""Standings as DataFrames: one row per function (or participant), best first."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FUNCTION_COLUMNS", "PARTICIPANT_COLUMNS", "standings_frame"]

PARTICIPANT_COLUMNS = ["place", "participant", "rounds", "mean_normalised_rank", "wins"]
FUNCTION_COLUMNS = [
    "place",
    "participant",
    "function",
    "version",
    "digest",
    "previous",
    "rounds",
    "mean_normalised_rank",
    "wins",
]


def standings_frame(data: dict[str, Any], *, of: str = "functions") -> pd.DataFrame:
    """The server's standings as a frame of `of` ("functions" or "participants"), in order;
    `attrs` keeps the type, the rounds and every row's ranks round by round."""
    if of not in ("functions", "participants"):
        raise ValueError("of= must be 'functions' or 'participants'")
    rows = []
    for place, row in enumerate(data.get(of, []), start=1):
        flat = {
            "place": place,
            "participant": row["participant"]["name"],
            "rounds": row["rounds"],
            "mean_normalised_rank": row["mean_normalised_rank"],
            "wins": row["wins"],
        }
        if of == "functions":
            function = row["function"]
            flat |= {
                "function": function["name"],
                "version": function["version"],
                "digest": function["digest"],
                "previous": function["previous"],
            }
        rows.append(flat)
    columns = FUNCTION_COLUMNS if of == "functions" else PARTICIPANT_COLUMNS
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs = {"type": data.get("type"), "of": of, "rounds": data.get("rounds", [])}
    frame.attrs["ranks"] = [row["ranks"] for row in data.get(of, [])]
    return frame
