"""Validate predictions, align them to the answer by id, and score them.

Everything here is pure: bytes and a spec in, a result out; no engine, no database. It runs
the same inline, in a process pool or on a Dask worker (scoring/workers.py loads the stored
frames and caches prepared answers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crowdsource import frames
from crowdsource.errors import CrowdsourceError, InvalidCompetition, InvalidSubmission
from crowdsource.metrics import compute, get_metric

LISTED = 5  # how many offending ids an error message names
LARGEST = 1e100  # larger predictions would overflow the metrics


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
    def needs(self) -> str:
        """What a submission must hold: labels, probabilities, values or clusters."""
        return get_metric(self.metric).needs

    @property
    def prediction_columns(self) -> list[str]:
        """The columns a submission holds besides the id column."""
        if self.needs == "probabilities":
            return [str(c) for c in self.classes or ()]
        return list(self.targets)


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


# ---------------------------------------------------------------- ids and labels


def _listed(values: Any) -> str:
    """The first few values, for a message."""
    shown = ", ".join(str(v) for v in values[:LISTED])
    return shown + (", ..." if len(values) > LISTED else "")


def canonical_labels(values: Any) -> np.ndarray:
    """Labels as strings, with 1.0 and 1 the same label."""
    s = pd.Series(values)
    if pd.api.types.is_float_dtype(s) and s.notna().all() and (s % 1 == 0).all():
        s = s.astype("int64")
    return s.astype(str).to_numpy()


def class_codes(values: np.ndarray, classes: tuple[Any, ...] | None) -> np.ndarray:
    """Each label's index in `classes` (-1 if not a class), compared as canonical text.
    Labels are factorised first, so only the distinct ones are turned into text."""
    lookup = {c: i for i, c in enumerate(canonical_labels(list(classes or ())))}
    codes, uniques = pd.factorize(values)
    index = np.array([lookup.get(c, -1) for c in canonical_labels(uniques)] + [-1])
    return index[codes]  # code -1 (a missing label) takes the trailing -1


ID_KINDS = ("integer", "string", "floating", "mixed-integer-float", "empty")


# what pandas.api.types.infer_dtype says of columns that hold only single values ("mixed" and
# "mixed-integer" may hide lists or dicts among them: those are looked at value by value)
SCALAR_KINDS = frozenset(
    [
        "string",
        "bytes",
        "floating",
        "integer",
        "mixed-integer-float",
        "decimal",
        "complex",
        "categorical",
        "boolean",
        "datetime64",
        "datetime",
        "date",
        "timedelta64",
        "timedelta",
        "time",
        "period",
        "empty",
    ]
)


def check_scalars(
    values: np.ndarray,
    column: str,
    *,
    what: str = "predictions",
    error: type[CrowdsourceError] = InvalidSubmission,
) -> None:
    """Refuse a column holding lists, objects or other values that are not single numbers,
    strings or booleans (they cannot be compared, hashed or scored)."""
    if values.dtype != object or pd.api.types.infer_dtype(values, skipna=True) in SCALAR_KINDS:
        return
    bad = np.flatnonzero([not pd.api.types.is_scalar(v) for v in values])
    if len(bad):
        kind = type(values[bad[0]]).__name__
        raise error(
            f"column '{column}' of the {what} holds {len(bad)} values that are not single "
            f"numbers or strings (a {kind} in row {int(bad[0])}); send one plain value per cell"
        )


def check_ids(
    ids: np.ndarray,
    id_column: str,
    *,
    what: str = "predictions",
    error: type[CrowdsourceError] = InvalidSubmission,
) -> None:
    """Ids must be all integers or all strings: one plain value each, of one kind."""
    if ids.dtype.kind in "iufU" or _id_kind(ids) in ID_KINDS:
        return
    check_scalars(ids, id_column, what=what, error=error)
    raise error(
        f"column '{id_column}' of the {what} holds {_id_kind(ids)} values; ids must be all "
        "integers or all strings"
    )


def _id_kind(ids: np.ndarray) -> str:
    """What pandas infers a column of ids to hold."""
    return str(pd.api.types.infer_dtype(ids, skipna=True))


def coerce_ids(ids: np.ndarray, like: np.ndarray, id_column: str) -> np.ndarray:
    """Cast submitted ids to the dtype of the answer's ids, or say why not."""
    if ids.dtype == like.dtype and (ids.dtype != object or _id_kind(ids) in ("string", "empty")):
        return ids
    empty = pd.isna(ids)
    if empty.any():
        raise InvalidSubmission(f"column '{id_column}' has {int(empty.sum())} empty ids")
    try:
        if like.dtype.kind in "iu":
            as_float = pd.to_numeric(pd.Series(ids), errors="raise").to_numpy(dtype="float64")
            if np.any(as_float % 1 != 0) or np.any(np.abs(as_float) >= 2.0**63):
                raise ValueError("not whole numbers within 64 bits")
            return as_float.astype(like.dtype)
        if like.dtype.kind == "f":
            return pd.to_numeric(pd.Series(ids), errors="raise").to_numpy(dtype=like.dtype)
        return pd.Series(ids).astype(str).to_numpy(dtype=object)
    except (ValueError, TypeError, OverflowError) as exc:
        kind = "integers" if like.dtype.kind in "iu" else "numbers"
        raise InvalidSubmission(
            f"column '{id_column}' must hold {kind}, like the dataset's ids ({exc})"
        ) from exc


def sorted_ids(ids: np.ndarray, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Sort ids; refuse missing and duplicate ones. Returns (order, sorted ids)."""
    if pd.isna(ids).any():
        raise InvalidSubmission(f"column '{id_column}' has {int(pd.isna(ids).sum())} empty ids")
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    dup = ids[1:] == ids[:-1]
    if dup.any():
        dups = np.unique(ids[1:][dup])
        raise InvalidSubmission(f"{len(dups)} duplicate ids ({_listed(dups)}): one row per id")
    return order, ids


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
            f"({_listed(ids[~known])})"
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


# ---------------------------------------------------------------- predictions


Columns = dict[str, np.ndarray]


def read_columns(body: frames.Body, content_type: str | None, spec: Spec) -> Columns:
    """A submission body as named numpy columns. Parquet is checked from its footer (columns,
    rows) before anything is decoded, then read without a pandas detour."""
    if frames.is_parquet(content_type):
        table = frames.read_table(
            body, [spec.id_column, *spec.prediction_columns], check=lambda m: _footer(spec, m)
        )
        return {
            str(name): column.to_numpy(zero_copy_only=False)
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    df = frames.decode_body(body, content_type, key="predictions")
    return {str(c): df[c].to_numpy() for c in df.columns}


def _footer(spec: Spec, meta: pq.FileMetaData) -> None:
    """Refuse, unread, predictions with the wrong columns or more rows than the dataset."""
    if sorted(meta.schema.names) != sorted([spec.id_column, *spec.prediction_columns]):
        schema = meta.schema.to_arrow_schema()  # its top-level names, and pandas' index
        index = (schema.pandas_metadata or {}).get("index_columns", [])
        check_columns(spec, [str(n) for n in schema.names if n not in index])
    if spec.rows is not None and meta.num_rows > spec.rows:
        raise InvalidSubmission(
            f"the predictions hold {meta.num_rows:,} rows; the dataset has {spec.rows:,} ids: "
            "submit one row per id"
        )


def check_columns(spec: Spec, got: list[str]) -> None:
    """Refuse a frame without the id column or with wrong prediction columns."""
    expected = [spec.id_column, *spec.prediction_columns]
    if spec.id_column not in got:
        raise InvalidSubmission(
            f"predictions need the id column '{spec.id_column}'; got columns: {', '.join(got)}"
        )
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing or extra:
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unexpected {', '.join(extra)}"] if extra else []
        )
        raise InvalidSubmission(
            f"wrong columns: {'; '.join(parts)}. Expected columns: {', '.join(expected)}"
        )


def align(spec: Spec, cols: Columns, expected: np.ndarray) -> tuple[np.ndarray, Columns]:
    """Sorted ids and the prediction columns in their order, once the ids match exactly."""
    check_columns(spec, list(cols))
    check_ids(cols[spec.id_column], spec.id_column)
    for column in spec.prediction_columns:
        check_scalars(cols[column], column)
    ids = coerce_ids(cols[spec.id_column], expected, spec.id_column)
    order, ids = sorted_ids(ids, spec.id_column)
    if len(ids) != len(expected) or not np.array_equal(ids, expected):
        missing = np.setdiff1d(expected, ids, assume_unique=True)
        extra = np.setdiff1d(ids, expected, assume_unique=True)
        parts = ([f"{len(missing)} ids missing ({_listed(missing)})"] if len(missing) else []) + (
            [f"{len(extra)} unknown ids ({_listed(extra)})"] if len(extra) else []
        )
        raise InvalidSubmission("; ".join(parts) + ": submit one row for each dataset id")
    return ids, {c: cols[c][order] for c in spec.prediction_columns}


def _nan_rows(ids: np.ndarray, values: Columns) -> None:
    """Refuse empty (NaN) predictions, naming the rows."""
    bad = np.zeros(len(ids), dtype=bool)
    for column in values.values():
        bad |= np.isnan(column) if column.dtype.kind == "f" else pd.isna(column)
    if bad.any():
        raise InvalidSubmission(
            f"{int(bad.sum())} rows have empty (NaN) predictions (ids {_listed(ids[bad])})"
        )


def encode_predictions(spec: Spec, ids: np.ndarray, values: Columns) -> np.ndarray:
    """Predictions as the metric wants them, after checking their values."""
    _nan_rows(ids, values)
    needs = spec.needs
    first = values[spec.prediction_columns[0]]
    if needs == "labels":
        return _encode_labels(spec, first)
    if needs == "clusters":
        return pd.factorize(first)[0]
    array = _floats(ids, values)
    if needs == "probabilities":
        _check_probabilities(array, ids)
        array /= array.sum(axis=1, keepdims=True)
        return array
    return array[:, 0] if array.shape[1] == 1 else array


def _floats(ids: np.ndarray, values: Columns) -> np.ndarray:
    """The prediction columns as one matrix of finite floats."""
    wrong = [c for c, v in values.items() if v.dtype.kind not in "fiub"]
    if wrong:
        raise InvalidSubmission(f"columns must be numbers: {', '.join(wrong)}")
    array = np.column_stack([v.astype("float64", copy=False) for v in values.values()])
    bad = ~(np.abs(array) <= LARGEST).all(axis=1)
    if bad.any():
        raise InvalidSubmission(
            f"{int(bad.sum())} rows have infinite or huge values, beyond {LARGEST:g} "
            f"(ids {_listed(ids[bad])})"
        )
    return array


def _check_probabilities(array: np.ndarray, ids: np.ndarray) -> None:
    """Probabilities must lie in [0, 1] and each row must sum to 1."""
    outside = ((array < 0) | (array > 1)).any(axis=1)
    if outside.any():
        raise InvalidSubmission(
            f"{int(outside.sum())} rows have probabilities outside [0, 1] "
            f"(ids {_listed(ids[outside])})"
        )
    off = np.abs(array.sum(axis=1) - 1) > 0.01
    if off.any():
        raise InvalidSubmission(
            f"{int(off.sum())} rows have probabilities that do not sum to 1 "
            f"(ids {_listed(ids[off])})"
        )


def _encode_labels(spec: Spec, labels: np.ndarray) -> np.ndarray:
    """Predicted labels as class codes; unknown labels are refused."""
    codes = class_codes(labels, spec.classes)
    unknown = codes < 0
    if unknown.any():
        names = np.unique(canonical_labels(labels[unknown]))
        raise InvalidSubmission(
            f"{int(unknown.sum())} rows have unknown labels ({_listed(names)}); "
            f"the classes are {', '.join(canonical_labels(list(spec.classes or ())))}"
        )
    return codes


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
    expected = np.sort(ids.to_numpy(zero_copy_only=False))
    if answer is None:
        return expected, None
    return expected, prepare_truth(spec, frames.read_parquet(answer), expected)


def score(spec: Spec, prepared: Prepared, body: frames.Body, content_type: str | None) -> Scored:
    """Decode, validate, align and score one submission body against a prepared answer."""
    cols = read_columns(body, content_type, spec)
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
    if expected.dtype == object:
        expected = expected.astype(str).astype(object)
    ids, values = align(spec, cols, expected)
    pred = encode_predictions(spec, ids, values)
    public, private, used = score_against(spec, truth, ids, pred)
    stored = None if keep else frames.to_parquet(pd.DataFrame({spec.id_column: ids, **values}))
    return Scored(public, private, used, stored)
