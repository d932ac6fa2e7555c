"""The scoring metrics agree with scikit-learn and are looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as sk

from crowdsource.metrics import (
    DEFAULT_METRIC,
    METRICS,
    allowed_metrics,
    compute,
    get_metric,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")

SEEDS = [0, 1, 2]
SIZES = [1, 2, 9, 1000]
BINARY = [[0, 1], ["no", "yes"]]
MULTICLASS = [[0, 1, 2], ["cat", "dog", "eel", "fox"], [-5, 7, 10**12]]
REGRESSION_SHAPES = [(1,), (2,), (9,), (1000,), (2, 2), (1000, 3)]

SKLEARN_REGRESSION: dict[str, Callable[..., float]] = {
    "rmse": sk.root_mean_squared_error,
    "mae": sk.mean_absolute_error,
    "absdiff": sk.mean_absolute_error,
    "r2": sk.r2_score,
    "mape": sk.mean_absolute_percentage_error,
}


def same(ours: float, theirs: float) -> None:
    """Equal to scikit-learn within 1e-9 (NaN where it gives NaN)."""
    assert isinstance(ours, float)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def random_labels(seed: int, n: int, classes: list[Any]) -> np.ndarray:
    """n labels drawn from classes, as an object array when they are strings."""
    rng = np.random.default_rng(seed)
    values = np.array(classes, dtype=object if isinstance(classes[0], str) else None)
    return values[rng.integers(0, len(classes), n)]


def random_probabilities(seed: int, n: int, k: int) -> np.ndarray:
    """n rows of k probabilities summing to 1, some rows certain (0 and 1) to test clipping."""
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet(np.ones(k), n)
    certain = rng.random(n) < 0.1
    proba[certain] = np.eye(k)[rng.integers(0, k, certain.sum())]
    return proba


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", BINARY + MULTICLASS)
def test_logloss_matches_sklearn(seed: int, n: int, classes: list[Any]) -> None:
    y_true = random_labels(seed, n, classes)
    proba = random_probabilities(seed + 100, n, len(classes))
    expected = sk.log_loss(y_true, y_proba=proba, labels=classes)
    same(compute("logloss", y_true, proba, classes=classes), expected)


def test_logloss_clips_a_certain_wrong_answer_like_sklearn() -> None:
    y_true, proba = ["a", "b"], np.array([[1.0, 0.0], [1.0, 0.0]])
    expected = sk.log_loss(y_true, y_proba=proba, labels=["a", "b"])
    same(compute("logloss", y_true, proba, classes=["a", "b"]), expected)


def test_logloss_clips_float32_with_float32_eps_like_sklearn() -> None:
    proba = np.array([[1.0, 0.0], [0.25, 0.75]], dtype=np.float32)
    expected = sk.log_loss([1, 1], y_proba=proba, labels=[0, 1])
    np.testing.assert_allclose(compute("logloss", [1, 1], proba, classes=[0, 1]), expected)


def test_logloss_infers_classes_from_the_answer() -> None:
    y_true = random_labels(0, 50, ["cat", "dog", "eel"])
    proba = random_probabilities(1, 50, 3)
    same(compute("logloss", y_true, proba), sk.log_loss(y_true, y_proba=proba))


def test_logloss_rejects_labels_outside_the_classes() -> None:
    with pytest.raises(ValueError, match=r"\['fox'\] are not among the classes"):
        compute("logloss", ["cat", "fox"], np.full((2, 2), 0.5), classes=["cat", "dog"])


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", BINARY + MULTICLASS)
def test_accuracy_matches_sklearn(seed: int, n: int, classes: list[Any]) -> None:
    y_true, y_pred = random_labels(seed, n, classes), random_labels(seed + 100, n, classes)
    same(compute("accuracy", y_true, y_pred, classes=classes), sk.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", BINARY)
def test_binary_f1_scores_the_last_class(seed: int, n: int, classes: list[Any]) -> None:
    y_true, y_pred = random_labels(seed, n, classes), random_labels(seed + 100, n, classes)
    expected = sk.f1_score(y_true, y_pred, pos_label=classes[-1])
    same(compute("f1", y_true, y_pred, classes=classes), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", MULTICLASS)
def test_multiclass_f1_is_macro(seed: int, n: int, classes: list[Any]) -> None:
    y_true, y_pred = random_labels(seed, n, classes), random_labels(seed + 100, n, classes)
    expected = sk.f1_score(y_true, y_pred, average="macro")
    same(compute("f1", y_true, y_pred, classes=classes), expected)


def test_multiclass_f1_counts_a_predicted_label_outside_the_classes() -> None:
    y_true, y_pred = [0, 1, 2, 2], [3, 1, 2, 0]
    expected = sk.f1_score(y_true, y_pred, average="macro")
    same(compute("f1", y_true, y_pred, classes=[0, 1, 2]), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", BINARY)
def test_binary_roc_auc_uses_the_last_column(seed: int, n: int, classes: list[Any]) -> None:
    y_true = random_labels(seed, n, classes)
    proba = random_probabilities(seed + 100, n, 2)
    expected = sk.roc_auc_score(y_true, proba[:, 1])
    same(compute("roc_auc", y_true, proba, classes=classes), expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_roc_auc_counts_tied_scores_half(seed: int) -> None:
    y_true = random_labels(seed, 1000, [0, 1])
    proba = np.round(random_probabilities(seed + 100, 1000, 2), 1)
    same(compute("roc_auc", y_true, proba, classes=[0, 1]), sk.roc_auc_score(y_true, proba[:, 1]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("classes", MULTICLASS)
def test_multiclass_roc_auc_is_one_vs_rest_macro(seed: int, n: int, classes: list[Any]) -> None:
    y_true = random_labels(seed, n, classes)
    proba = random_probabilities(seed + 100, n, len(classes))
    expected = sk.roc_auc_score(y_true, proba, multi_class="ovr", labels=classes)
    same(compute("roc_auc", y_true, proba, classes=classes), expected)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", REGRESSION_SHAPES)
@pytest.mark.parametrize("name", SKLEARN_REGRESSION)
def test_regression_metric_matches_sklearn(seed: int, shape: tuple[int, ...], name: str) -> None:
    rng = np.random.default_rng(seed)
    y_true = rng.normal(size=shape)
    y_pred = y_true + rng.normal(scale=0.5, size=shape)
    same(compute(name, y_true, y_pred), SKLEARN_REGRESSION[name](y_true, y_pred))


@pytest.mark.parametrize("y_pred", [[3.0, 3.0, 3.0], [3.0, 4.0, 3.0]])
def test_r2_with_constant_truth_matches_sklearn(y_pred: list[float]) -> None:
    same(compute("r2", [3.0, 3.0, 3.0], y_pred), sk.r2_score([3.0, 3.0, 3.0], y_pred))


def test_r2_with_some_constant_targets_matches_sklearn() -> None:
    y_true = np.array([[1.0, 5.0, 5.0], [2.0, 5.0, 5.0], [4.0, 5.0, 5.0]])
    y_pred = np.array([[1.5, 5.0, 6.0], [2.0, 5.0, 5.0], [3.0, 5.0, 5.0]])
    same(compute("r2", y_true, y_pred), sk.r2_score(y_true, y_pred))


def test_mape_floors_zero_truth_at_eps_like_sklearn() -> None:
    y_true, y_pred = [1.0, 0.0, 2.4, 7.0], [1.2, 0.1, 2.4, 8.0]
    same(compute("mape", y_true, y_pred), sk.mean_absolute_percentage_error(y_true, y_pred))


def test_absdiff_is_mae() -> None:
    assert compute("absdiff", [1.0, 2.0], [2.0, 4.0]) == compute("mae", [1.0, 2.0], [2.0, 4.0])


def test_regression_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        compute("rmse", np.zeros((4, 2)), np.zeros(4))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("clusters", [[0, 1, 2], ["x", "y"], list(range(50))])
def test_adjusted_rand_matches_sklearn(seed: int, n: int, clusters: list[Any]) -> None:
    y_true = random_labels(seed, n, clusters)
    y_pred = random_labels(seed + 100, n, [10, 20, 30, 40])
    same(compute("adjusted_rand", y_true, y_pred), sk.adjusted_rand_score(y_true, y_pred))


def test_adjusted_rand_ignores_label_names() -> None:
    assert compute("adjusted_rand", [0, 0, 1, 1, 2], ["b", "b", "a", "a", "c"]) == 1.0


GOOD_AND_BAD: dict[str, tuple[list[Any], Any, Any]] = {
    "labels": ([0, 1, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]),
    "probabilities": ([0, 1, 1, 0], np.eye(2)[[0, 1, 1, 0]] * 0.8 + 0.1, np.full((4, 2), 0.5)),
    "values": ([1.0, 2.0, 3.0, 4.0], [1.1, 2.0, 2.9, 4.0], [4.0, 1.0, 2.0, 3.0]),
    "clusters": ([0, 0, 1, 1], [5, 5, 7, 7], [5, 7, 5, 7]),
}


@pytest.mark.parametrize("name", METRICS)
def test_direction_ranks_a_good_prediction_above_a_bad_one(name: str) -> None:
    metric = get_metric(name)
    y_true, good, bad = GOOD_AND_BAD[metric.needs]
    good_score = compute(metric, y_true, good, classes=[0, 1])
    bad_score = compute(metric, y_true, bad, classes=[0, 1])
    assert (good_score > bad_score) == metric.higher_is_better


def test_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown metric 'auc'") as error:
        get_metric("auc")
    assert all(name in str(error.value) for name in METRICS)


def test_the_registry_holds_the_documented_metrics() -> None:
    documented = {"logloss", "accuracy", "f1", "roc_auc", "rmse", "mae", "r2", "mape"}
    assert set(METRICS) == documented | {"adjusted_rand", "absdiff"}
    assert all(metric.name == name for name, metric in METRICS.items())


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("classify", ["logloss", "accuracy", "f1", "roc_auc"]),
        ("regress", ["rmse", "mae", "r2", "mape", "absdiff"]),
        ("predict", ["rmse", "mae", "r2", "mape", "absdiff"]),
        ("cluster", ["adjusted_rand"]),
    ],
)
def test_allowed_metrics_by_type_include_the_default(kind: str, expected: list[str]) -> None:
    assert allowed_metrics(kind) == expected
    assert DEFAULT_METRIC[kind] in expected


def test_allowed_metrics_of_an_unknown_type_lists_the_types() -> None:
    with pytest.raises(ValueError, match="classify, regress, predict, cluster"):
        allowed_metrics("rank")
