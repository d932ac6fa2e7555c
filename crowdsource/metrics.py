"""Scoring metrics: one registry of named scores, computed with numpy on the hot path.

Every metric returns what scikit-learn returns for the same input (the tests check this),
but avoids scikit-learn's input checks and label sorting, which dominate on a million rows.
Inputs arrive aligned by id and validated for NaN and ranges.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "DEFAULT_METRIC",
    "METRICS",
    "Metric",
    "Needs",
    "absdiff",
    "accuracy",
    "adjusted_rand",
    "allowed_metrics",
    "compute",
    "f1",
    "get_metric",
    "logloss",
    "mae",
    "mape",
    "r2",
    "rmse",
    "roc_auc",
]

Needs = Literal["labels", "probabilities", "values", "clusters"]

_MAPE_EPSILON = np.finfo(np.float64).eps  # scikit-learn's floor for |y_true| in mape


@dataclass(frozen=True)
class Metric:
    """A named score: which way is better, what a submission holds, and how to compute it."""

    name: str
    higher_is_better: bool
    needs: Needs
    func: Callable[..., float]


# ---------------------------------------------------------------- helpers


def _rows(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as arrays, checked to hold the same number of rows."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows but y_pred has {len(p)}")
    return t, p


def _columns(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as float arrays of shape (rows, targets), checked to match."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return t, p


def _classes(y_true: np.ndarray, classes: npt.ArrayLike | None) -> np.ndarray:
    """The given classes, or else the sorted unique labels of y_true."""
    if classes is not None:
        return np.asarray(classes)
    return np.sort(pd.unique(y_true))


def _factorize(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and uniques of labels in order of appearance; a missing label is a ValueError."""
    codes, uniques = pd.factorize(labels)
    if len(codes) and codes.min() < 0:
        raise ValueError("labels must not be missing")
    return codes, np.asarray(uniques)


def _codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in classes; labels outside them are numbered on from len(classes)."""
    if labels.dtype.kind in "iu" and classes.dtype.kind in "iu" and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if high - low <= len(labels) + len(classes):  # a lookup table no bigger than the input
            table = np.full(high - low + 1, -1, dtype=np.intp)
            inside = (classes >= low) & (classes <= high)
            table[classes[inside] - low] = np.flatnonzero(inside)
            codes = table[labels - low]
            if codes.min() >= 0:
                return codes
    codes, uniques = _factorize(labels)
    where = {c: i for i, c in enumerate(classes.tolist())}
    positions = [where.setdefault(u, len(where)) for u in uniques.tolist()]
    return np.asarray(positions, dtype=np.intp)[codes]


def _known_codes(labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Position of each label in classes; a label outside them is a ValueError."""
    codes = _codes(labels, classes)
    if len(codes) and codes.max() >= len(classes):
        unknown = sorted(set(pd.unique(labels).tolist()) - set(classes.tolist()), key=str)
        raise ValueError(f"labels {unknown[:5]} are not among the classes {classes.tolist()}")
    return codes


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve from rank sums (ties count half); NaN without both classes."""
    n = len(score)
    n_pos = int(np.count_nonzero(positive))
    n_neg = n - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score)
    sorted_score = score[order]
    new_value = np.empty(n, dtype=bool)
    new_value[0] = True
    np.not_equal(sorted_score[1:], sorted_score[:-1], out=new_value[1:])
    starts = np.flatnonzero(new_value)
    twice_mean_rank = starts + np.r_[starts[1:], n] + 1  # of each run of tied scores
    rank_sum = int(twice_mean_rank[np.cumsum(new_value)[positive[order]] - 1].sum()) / 2
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# ---------------------------------------------------------------- classify


def logloss(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, classes: npt.ArrayLike | None = None
) -> float:
    """Mean negative log probability of the true class, probabilities clipped to [eps, 1-eps]."""
    t, proba = _rows(y_true, y_pred)
    labels = _classes(t, classes)
    if len(labels) < 2:
        raise ValueError(f"logloss needs at least two classes, got {labels.tolist()}")
    if proba.ndim != 2 or proba.shape[1] != len(labels):
        raise ValueError(f"y_pred must have one probability column per class ({len(labels)})")
    if not np.issubdtype(proba.dtype, np.floating):
        proba = proba.astype(np.float64)
    eps = np.finfo(proba.dtype).eps
    picked = proba[np.arange(len(proba)), _known_codes(t, labels)]
    return float(-np.mean(np.log(np.clip(picked, eps, 1 - eps))))


def accuracy(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, classes: npt.ArrayLike | None = None
) -> float:
    """Fraction of labels predicted exactly (classes is accepted for symmetry and unused)."""
    t, p = _rows(y_true, y_pred)
    return float(np.mean(t == p))


def f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, classes: npt.ArrayLike | None = None
) -> float:
    """F1 of classes[-1] for two classes, else the macro F1 over the labels present."""
    t, p = _rows(y_true, y_pred)
    labels = _classes(t, classes)
    if len(labels) == 2:
        is_true, is_pred = t == labels[-1], p == labels[-1]
        tp = np.count_nonzero(is_true & is_pred)
        total = np.count_nonzero(is_true) + np.count_nonzero(is_pred)
        return 2 * tp / total if total else 0.0
    code_true, code_pred = _known_codes(t, labels), _codes(p, labels)
    k = max(len(labels), int(code_pred.max(initial=0)) + 1)
    tp_per = np.bincount(code_true[code_true == code_pred], minlength=k)
    total_per = np.bincount(code_true, minlength=k) + np.bincount(code_pred, minlength=k)
    present = total_per > 0
    return float(np.mean(2 * tp_per[present] / total_per[present]))


def roc_auc(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, *, classes: npt.ArrayLike | None = None
) -> float:
    """ROC AUC of classes[-1] for two classes, else one-vs-rest macro; NaN if a class is absent."""
    t, proba = _rows(y_true, y_pred)
    labels = _classes(t, classes)
    if proba.ndim != 2 or proba.shape[1] != len(labels):
        raise ValueError(f"y_pred must have one probability column per class ({len(labels)})")
    if len(labels) == 2:
        return _binary_auc(t == labels[-1], proba[:, -1])
    codes = _known_codes(t, labels)
    return float(np.mean([_binary_auc(codes == j, proba[:, j]) for j in range(len(labels))]))


# ---------------------------------------------------------------- regress and predict


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error, averaged over targets."""
    t, p = _columns(y_true, y_pred)
    diff = t - p
    return float(np.mean(np.sqrt(np.mean(diff * diff, axis=0))))


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error, averaged over targets."""
    t, p = _columns(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(t - p), axis=0)))


def absdiff(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute difference: the original crowdsource metric, equal to mae."""
    return mae(y_true, y_pred)


def r2(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Coefficient of determination per target (1 if exact, 0 if y_true is constant), averaged."""
    t, p = _columns(y_true, y_pred)
    if len(t) < 2:
        return float("nan")
    residual = np.sum((t - p) ** 2, axis=0)
    spread = np.sum((t - np.mean(t, axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where(residual == 0, 1.0, np.where(spread == 0, 0.0, 1 - residual / spread))
    return float(np.mean(scores))


def mape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute percentage error as a fraction, |y_true| floored at float64 eps."""
    t, p = _columns(y_true, y_pred)
    return float(np.mean(np.mean(np.abs(p - t) / np.maximum(np.abs(t), _MAPE_EPSILON), axis=0)))


# ---------------------------------------------------------------- cluster


def adjusted_rand(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Adjusted Rand index between two labelings (label names do not matter)."""
    t, p = _rows(y_true, y_pred)
    n = len(t)
    code_true = _factorize(t)[0].astype(np.int64)
    code_pred = _factorize(p)[0].astype(np.int64)
    pair = code_true * (int(code_pred.max(initial=0)) + 1) + code_pred
    cells = np.bincount(pd.factorize(pair)[0])
    sizes_true, sizes_pred = np.bincount(code_true), np.bincount(code_pred)
    same_both = int(np.dot(cells, cells))
    fn = int(np.dot(sizes_true, sizes_true)) - same_both
    fp = int(np.dot(sizes_pred, sizes_pred)) - same_both
    tp, tn = same_both - n, n * n - fp - fn - same_both
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


# ---------------------------------------------------------------- registry

METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("logloss", False, "probabilities", logloss),
        Metric("accuracy", True, "labels", accuracy),
        Metric("f1", True, "labels", f1),
        Metric("roc_auc", True, "probabilities", roc_auc),
        Metric("rmse", False, "values", rmse),
        Metric("mae", False, "values", mae),
        Metric("r2", True, "values", r2),
        Metric("mape", False, "values", mape),
        Metric("adjusted_rand", True, "clusters", adjusted_rand),
        Metric("absdiff", False, "values", absdiff),
    ]
}

DEFAULT_METRIC: dict[str, str] = {
    "classify": "logloss",
    "regress": "rmse",
    "predict": "rmse",
    "cluster": "adjusted_rand",
}

_NEEDS_BY_TYPE: dict[str, tuple[Needs, ...]] = {
    "classify": ("labels", "probabilities"),
    "regress": ("values",),
    "predict": ("values",),
    "cluster": ("clusters",),
}


def get_metric(name: str) -> Metric:
    """The metric called name; ValueError listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        known = ", ".join(METRICS)
        raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


def allowed_metrics(type: str) -> list[str]:
    """Names of the metrics that fit a competition type, in registry order."""
    if type not in _NEEDS_BY_TYPE:
        known = ", ".join(_NEEDS_BY_TYPE)
        raise ValueError(f"unknown competition type {type!r}; known types: {known}")
    return [m.name for m in METRICS.values() if m.needs in _NEEDS_BY_TYPE[type]]


def compute(
    metric: Metric | str,
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    *,
    classes: npt.ArrayLike | None = None,
) -> float:
    """Score y_pred against y_true; classes (sorted labels) order the probability columns."""
    if isinstance(metric, str):
        metric = get_metric(metric)
    if metric.needs in ("labels", "probabilities"):
        return metric.func(y_true, y_pred, classes=classes)
    return metric.func(y_true, y_pred)
