"""The Ladder (Blum and Hardt, 2015): a public score that moves only when a submission beats
the shown one by more than a step, and is shown rounded to that step, so that many small
probes of the public rows learn next to nothing about them."""

from __future__ import annotations

SCORINGS = ("plain", "ladder")
DEFAULT_STEP = 0.01


def rounded(score: float, *, step: float) -> float:
    """`score` to the nearest multiple of `step` (tidied of float noise)."""
    return round(round(score / step) * step, 12)


def climb(
    shown: float | None, score: float, *, step: float, higher_is_better: bool
) -> float | None:
    """The new public score when `score` beats `shown` (the current one, itself a multiple of
    `step`) by more than `step`, rounded to the step; None when the board stays as it is."""
    if shown is None:
        return rounded(score, step=step)
    gain = score - shown if higher_is_better else shown - score
    return rounded(score, step=step) if gain > step else None
