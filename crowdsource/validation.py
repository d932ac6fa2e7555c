"""The checks a submission must pass before it is scored: one implementation, run by the
server (a refusal is its 422, or a failed submission's reason) and by the client before it
sends anything (`Competition.check`), so both say the same words.

It needs only what a competition's public description says (a `Shape`) and the ids of its
dataset, which participants download anyway; nothing here knows the answer. No server imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crowdsource import frames
from crowdsource.errors import CrowdsourceError, InvalidSubmission
from crowdsource.metrics import get_metric

__all__ = [
    "Columns",
    "Shape",
    "canonical_labels",
    "check_frame",
    "check_ids",
    "check_scalars",
    "class_codes",
    "coerce_ids",
    "expected_ids",
    "listed",
    "read_columns",
    "sorted_ids",
    "validate",
]

LISTED = 5  # how many offending ids an error message names
LARGEST = 1e100  # larger predictions would overflow the metrics


@dataclass(frozen=True)
class Shape:
    """What a competition's predictions must look like, from its public description."""

    id_column: str
    metric: str
    targets: tuple[str, ...]
    classes: tuple[Any, ...] | None
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


# ---------------------------------------------------------------- ids and labels


def listed(values: Any) -> str:
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
        raise InvalidSubmission(f"{len(dups)} duplicate ids ({listed(dups)}): one row per id")
    return order, ids


# ---------------------------------------------------------------- predictions


Columns = dict[str, np.ndarray]


def read_columns(body: frames.Body, content_type: str | None, shape: Shape) -> Columns:
    """A submission body as named numpy columns. Parquet is checked from its footer (columns,
    rows) before anything is decoded, then read without a pandas detour."""
    if frames.is_parquet(content_type):
        table = frames.read_table(
            body, [shape.id_column, *shape.prediction_columns], check=lambda m: _footer(shape, m)
        )
        return {
            str(name): column.to_numpy(zero_copy_only=False)
            for name, column in zip(table.column_names, table.columns, strict=True)
        }
    df = frames.decode_body(body, content_type, key="predictions")
    return {str(c): df[c].to_numpy() for c in df.columns}


def _footer(shape: Shape, meta: pq.FileMetaData) -> None:
    """Refuse, unread, predictions with the wrong columns or more rows than the dataset."""
    if sorted(meta.schema.names) != sorted([shape.id_column, *shape.prediction_columns]):
        schema = meta.schema.to_arrow_schema()  # its top-level names, and pandas' index
        index = (schema.pandas_metadata or {}).get("index_columns", [])
        check_columns(shape, [str(n) for n in schema.names if n not in index])
    if shape.rows is not None and meta.num_rows > shape.rows:
        raise InvalidSubmission(
            f"the predictions hold {meta.num_rows:,} rows; the dataset has {shape.rows:,} ids: "
            "submit one row per id"
        )


def check_columns(shape: Shape, got: list[str]) -> None:
    """Refuse a frame without the id column or with wrong prediction columns."""
    expected = [shape.id_column, *shape.prediction_columns]
    if shape.id_column not in got:
        raise InvalidSubmission(
            f"predictions need the id column '{shape.id_column}'; got columns: {', '.join(got)}"
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


def align(shape: Shape, cols: Columns, expected: np.ndarray) -> tuple[np.ndarray, Columns]:
    """Sorted ids and the prediction columns in their order, once the ids match exactly."""
    check_columns(shape, list(cols))
    check_ids(cols[shape.id_column], shape.id_column)
    for column in shape.prediction_columns:
        check_scalars(cols[column], column)
    ids = coerce_ids(cols[shape.id_column], expected, shape.id_column)
    order, ids = sorted_ids(ids, shape.id_column)
    if len(ids) != len(expected) or not np.array_equal(ids, expected):
        missing = np.setdiff1d(expected, ids, assume_unique=True)
        extra = np.setdiff1d(ids, expected, assume_unique=True)
        parts = ([f"{len(missing)} ids missing ({listed(missing)})"] if len(missing) else []) + (
            [f"{len(extra)} unknown ids ({listed(extra)})"] if len(extra) else []
        )
        raise InvalidSubmission("; ".join(parts) + ": submit one row for each dataset id")
    return ids, {c: cols[c][order] for c in shape.prediction_columns}


def _nan_rows(ids: np.ndarray, values: Columns) -> None:
    """Refuse empty (NaN) predictions, naming the rows."""
    bad = np.zeros(len(ids), dtype=bool)
    for column in values.values():
        bad |= np.isnan(column) if column.dtype.kind == "f" else pd.isna(column)
    if bad.any():
        raise InvalidSubmission(
            f"{int(bad.sum())} rows have empty (NaN) predictions (ids {listed(ids[bad])})"
        )


def encode_predictions(shape: Shape, ids: np.ndarray, values: Columns) -> np.ndarray:
    """Predictions as the metric wants them, after checking their values."""
    _nan_rows(ids, values)
    needs = shape.needs
    first = values[shape.prediction_columns[0]]
    if needs == "labels":
        return _encode_labels(shape, first)
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
            f"(ids {listed(ids[bad])})"
        )
    return array


def _check_probabilities(array: np.ndarray, ids: np.ndarray) -> None:
    """Probabilities must lie in [0, 1] and each row must sum to 1."""
    outside = ((array < 0) | (array > 1)).any(axis=1)
    if outside.any():
        raise InvalidSubmission(
            f"{int(outside.sum())} rows have probabilities outside [0, 1] "
            f"(ids {listed(ids[outside])})"
        )
    off = np.abs(array.sum(axis=1) - 1) > 0.01
    if off.any():
        raise InvalidSubmission(
            f"{int(off.sum())} rows have probabilities that do not sum to 1 "
            f"(ids {listed(ids[off])})"
        )


def _encode_labels(shape: Shape, labels: np.ndarray) -> np.ndarray:
    """Predicted labels as class codes; unknown labels are refused."""
    codes = class_codes(labels, shape.classes)
    unknown = codes < 0
    if unknown.any():
        names = np.unique(canonical_labels(labels[unknown]))
        raise InvalidSubmission(
            f"{int(unknown.sum())} rows have unknown labels ({listed(names)}); "
            f"the classes are {', '.join(canonical_labels(list(shape.classes or ())))}"
        )
    return codes


# ---------------------------------------------------------------- the whole check


def expected_ids(ids: np.ndarray) -> np.ndarray:
    """A dataset's ids (its id column's values) as submissions are aligned to them: sorted."""
    return np.sort(ids)


def validate(
    shape: Shape, cols: Columns, expected: np.ndarray
) -> tuple[np.ndarray, Columns, np.ndarray]:
    """Every check, in the server's order: the sorted ids, the prediction columns in their
    order, and the predictions encoded for the metric. Raises InvalidSubmission."""
    if expected.dtype == object:
        expected = expected.astype(str).astype(object)
    ids, values = align(shape, cols, expected)
    return ids, values, encode_predictions(shape, ids, values)


def check_frame(shape: Shape, frame: pd.DataFrame, expected: np.ndarray) -> int:
    """Check a frame exactly as the server checks it once sent: as Parquet, as the client
    sends it. Returns its rows; raises what the server would answer."""
    body = frames.to_parquet(frame, what="predictions")
    cols = read_columns(body, frames.PARQUET, shape)
    ids, _, _ = validate(shape, cols, expected)
    return len(ids)
