"""Validate predictions, align them to the answer by id, and score them.

The checks themselves live in crowdsource/validation.py, shared with the client's pre-flight
check. Everything here is pure: bytes and a spec in, a result out; no engine, no database. It
runs the same inline, in a process pool or on a Dask worker (scoring/workers.py loads the
stored frames and caches prepared answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crowdsource import frames
from crowdsource.errors import InvalidCompetition
from crowdsource.metrics import compute
from crowdsource.validation import (
    Columns,
    Shape,
    canonical_labels,
    check_ids,
    check_scalars,
    class_codes,
    coerce_ids,
    expected_ids,
    listed,
    read_columns,
    sorted_ids,
    validate,
)

__all__ = [
    "Prepared",
    "Scored",
    "Spec",
    "Truth",
    "canonical_labels",
    "check_ids",
    "check_scalars",
    "coerce_ids",
    "prepare",
    "prepare_truth",
    "public_mask",
    "score",
    "score_columns",
]


@dataclass(frozen=True)
class Spec:
    """What scoring needs to know about a competition."""

    competition_id: int
    type: str
    metric: str
    id_column: str
    targets: tuple[str, ...]
    classes: tuple[Any, ...] | None
    public_fraction: float
    split_salt: str
    dataset_blob_id: int
    answer_blob_id: int | None
    rows: int | None = None  # the dataset's rows: a submission holding more is refused unread

    @property
    def shape(self) -> Shape:
        """What its predictions must look like: all that validating them needs."""
        return Shape(self.id_column, self.metric, self.targets, self.classes, self.rows)

    @property
    def needs(self) -> str:
        """What a submission must hold: labels, probabilities, values or clusters."""
        return self.shape.needs

    @property
    def prediction_columns(self) -> list[str]:
        """The columns a submission holds besides the id column."""
        return self.shape.prediction_columns


@dataclass(frozen=True)
class Truth:
    """The answer, sorted by id, with the public/private split."""

    ids: np.ndarray
    y: np.ndarray
    public: np.ndarray


@dataclass(frozen=True)
class Scored:
    """The outcome of scoring one submission."""

    public_score: float | None
    private_score: float | None
    answer_rows: int
    predictions: bytes | None  # None: store the body as it was sent (it is Parquet already)
    blob_id: int | None = None  # the predictions, when the scoring worker stored them itself

    @property
    def state(self) -> str:
        """`scored` once any truth was used, else `awaiting_answer`."""
        return "scored" if self.answer_rows else "awaiting_answer"


# ---------------------------------------------------------------- the public split


def public_mask(ids: np.ndarray, *, fraction: float, salt: str) -> np.ndarray:
    """Which ids score on the public board: a salted hash, stable for each id."""
    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    hashed = pd.util.hash_pandas_object(pd.Series(ids), index=False, hash_key=salt)
    return (hashed.to_numpy() % np.uint64(1_000_000)) < np.uint64(round(fraction * 1_000_000))


# ---------------------------------------------------------------- the answer


def prepare_truth(spec: Spec, answer: pd.DataFrame, expected: np.ndarray) -> Truth:
    """Sort the answer by id and encode its targets for the metric."""
    ids = coerce_ids(answer[spec.id_column].to_numpy(), expected, spec.id_column)
    order, ids = sorted_ids(ids, spec.id_column)
    known = np.isin(ids, expected)
    if not known.all():
        raise InvalidCompetition(
            f"answer rows name {int((~known).sum())} ids that are not in the dataset "
            f"({listed(ids[~known])})"
        )
    targets = answer[list(spec.targets)].iloc[order]
    if targets.isna().to_numpy().any():
        raise InvalidCompetition("the answer has empty target values; every row needs one")
    return Truth(ids=ids, y=_encode_truth(spec, targets), public=_split(spec, ids))


def _split(spec: Spec, ids: np.ndarray) -> np.ndarray:
    """The public mask for these answer ids."""
    return public_mask(ids, fraction=spec.public_fraction, salt=spec.split_salt)


def _encode_truth(spec: Spec, targets: pd.DataFrame) -> np.ndarray:
    """Targets as class codes (classify), cluster codes, or floats."""
    if spec.type == "classify":
        codes = class_codes(targets.iloc[:, 0].to_numpy(), spec.classes)
        if (codes < 0).any():
            raise InvalidCompetition("the answer holds labels outside the competition's classes")
        return codes
    if spec.type == "cluster":
        return pd.factorize(targets.iloc[:, 0])[0]
    try:
        values = targets.to_numpy(dtype="float64")
    except (ValueError, TypeError) as exc:
        raise InvalidCompetition(f"answer targets must be numbers for '{spec.type}'") from exc
    return values[:, 0] if values.shape[1] == 1 else values


# ---------------------------------------------------------------- scoring


def score_against(
    spec: Spec, truth: Truth | None, ids: np.ndarray, pred: np.ndarray
) -> tuple[float | None, float | None, int]:
    """Public and private scores of aligned predictions, and the answer rows used."""
    if truth is None or not len(truth.ids):
        return None, None, 0
    if len(truth.ids) != len(ids):  # a partial answer: score the rows known so far
        pred = pred[np.searchsorted(ids, truth.ids)]
    if spec.public_fraction >= 1.0:
        public = _part(spec, truth.y, pred)
        return public, public, len(truth.ids)
    public = _part(spec, truth.y[truth.public], pred[truth.public])
    private = _part(spec, truth.y[~truth.public], pred[~truth.public])
    return public, private, len(truth.ids)


def _part(spec: Spec, y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """The metric on one part of the rows; None where it is undefined there."""
    if not len(y_true):
        return None
    classes = list(range(len(spec.classes))) if spec.classes else None
    try:
        value = float(compute(spec.metric, y_true, y_pred, classes=classes))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


# ---------------------------------------------------------------- the unit of scoring work


Prepared = tuple[np.ndarray, Truth | None]  # the sorted dataset ids, and the answer if known


def prepare(spec: Spec, dataset: bytes, answer: bytes | None) -> Prepared:
    """Sorted dataset ids and the prepared answer, from their stored Parquet bytes."""
    ids = frames.read_table(dataset, [spec.id_column]).column(0)
    expected = expected_ids(ids.to_numpy(zero_copy_only=False))
    if answer is None:
        return expected, None
    return expected, prepare_truth(spec, frames.read_parquet(answer), expected)


def score(spec: Spec, prepared: Prepared, body: frames.Body, content_type: str | None) -> Scored:
    """Decode, validate, align and score one submission body against a prepared answer."""
    cols = read_columns(body, content_type, spec.shape)
    expected, truth = prepared
    return score_columns(spec, cols, expected, truth, keep=frames.is_parquet(content_type))


def score_columns(
    spec: Spec,
    cols: Columns,
    expected: np.ndarray,
    truth: Truth | None,
    *,
    keep: bool = False,
) -> Scored:
    """Validate, align and score decoded columns; with `keep` the body is stored as sent."""
    ids, values, pred = validate(spec.shape, cols, expected)
    public, private, used = score_against(spec, truth, ids, pred)
    stored = None if keep else frames.to_parquet(pd.DataFrame({spec.id_column: ids, **values}))
    return Scored(public, private, used, stored)
