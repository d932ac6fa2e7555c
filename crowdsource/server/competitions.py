"""Competitions: hosting from DataFrames, listing, answers that arrive later, closing."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from crowdsource import frames
from crowdsource.errors import BadRequest, Forbidden, InvalidCompetition, NotFound
from crowdsource.metrics import DEFAULT_METRIC, allowed_metrics, get_metric
from crowdsource.server.scoring.score import (
    Prepared,
    Spec,
    canonical_labels,
    check_ids,
    check_scalars,
    coerce_ids,
    prepare,
)
from crowdsource.server.storage import blobs
from crowdsource.server.storage.tables import COMPETITIONS, Competition, Participant
from crowdsource.times import iso, parse_time

TYPES = ("classify", "regress", "predict", "cluster")
STATUSES = ("upcoming", "open", "closed")
LABEL_KINDS = ("string", "integer", "floating", "boolean", "mixed-integer-float")


@dataclass(frozen=True)
class Hosting:
    """A checked competition spec with its frames, ready to store."""

    fields: dict[str, Any]
    answer: pd.DataFrame | None
    dataset_parquet: bytes
    answer_parquet: bytes | None


def status(comp: Competition, now: datetime) -> str:
    """`upcoming`, `open` or `closed` at `now`."""
    if now < comp.opens_at:
        return "upcoming"
    if comp.closes_at is not None and now >= comp.closes_at:
        return "closed"
    return "open"


def spec(comp: Competition) -> Spec:
    """What the scorer needs to know about a competition."""
    return Spec(
        competition_id=comp.id,
        type=comp.type,
        metric=comp.metric,
        id_column=comp.id_column,
        targets=tuple(comp.targets),
        classes=tuple(comp.classes) if comp.classes else None,
        public_fraction=comp.public_fraction,
        split_salt=comp.split_salt,
        dataset_blob_id=comp.dataset_blob_id,
        answer_blob_id=comp.answer_blob_id,
        rows=comp.rows,
    )


def as_json(comp: Competition, host: Participant, now: datetime) -> dict[str, Any]:
    """The public view of a competition (no answer, no salt)."""
    metric = get_metric(comp.metric)
    return {
        "id": comp.id,
        "title": comp.title,
        "description": comp.description,
        "type": comp.type,
        "metric": comp.metric,
        "higher_is_better": metric.higher_is_better,
        "id_column": comp.id_column,
        "targets": comp.targets,
        "classes": comp.classes,
        "prediction_columns": spec(comp).prediction_columns,
        "host": {"id": host.id, "name": host.name},
        "opens_at": iso(comp.opens_at),
        "closes_at": iso(comp.closes_at),
        "daily_limit": comp.daily_limit,
        "public_fraction": comp.public_fraction,
        "status": status(comp, now),
        "rows": comp.rows,
        "answer_rows": comp.answer_rows,
        "created_at": iso(comp.created_at),
    }


# ---------------------------------------------------------------- checking a spec


def _text(body: dict[str, Any], key: str, *, limit: int, default: str | None = None) -> str:
    """A string field, trimmed and bounded."""
    value = body.get(key, default)
    if not isinstance(value, str) or (default is None and not value.strip()):
        raise BadRequest(f"'{key}' must be a non-empty string")
    if len(value) > limit:
        raise BadRequest(f"'{key}' is {len(value)} characters long; use at most {limit}")
    if "\x00" in value or (key == "title" and not value.isprintable()):
        raise BadRequest(f"'{key}' must not hold control characters (such as NUL)")
    return value.strip()


def _targets(body: dict[str, Any], kind: str) -> list[str]:
    """The target column names."""
    value = body.get("targets", body.get("target"))
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise BadRequest("'targets' must name the answer's target column(s), e.g. [\"label\"]")
    if kind in ("classify", "cluster") and len(value) != 1:
        raise InvalidCompetition(f"a '{kind}' competition has exactly one target column")
    return value


def _choice(
    body: dict[str, Any], key: str, options: list[str] | tuple[str, ...], default: str | None = None
) -> str:
    """A field that must be one of `options`."""
    value = body.get(key, default)
    if value not in options:
        raise BadRequest(f"'{key}' must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def _number(
    body: dict[str, Any],
    key: str,
    *,
    default: float | None,
    low: float,
    high: float,
    integer: bool = False,
) -> float | None:
    """A bounded number field (or null where the default is null)."""
    value = body.get(key, default)
    if value is None and default is None:
        return None
    assert value is not None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not low <= value <= high:
        kind = "a whole number" if integer else "a number"
        raise BadRequest(f"'{key}' must be {kind} from {low:g} to {high:g}; got {value!r}")
    return value


def _frame(body: dict[str, Any], key: str, *, required: bool) -> pd.DataFrame | None:
    """A frame field."""
    if body.get(key) is None:
        if required:
            raise BadRequest(f"'{key}' is required: a frame (records, split form or Parquet)")
        return None
    df = frames.decode_frame(body[key], what=key)
    df.columns = [str(c) for c in df.columns]
    return df


def check(body: Any) -> Hosting:
    """Check a create request and return what to store, or say what to fix."""
    if not isinstance(body, dict):
        raise BadRequest("send a JSON object with title, type, targets, dataset and answer")
    kind = _choice(body, "type", TYPES)
    metric = body.get("metric", DEFAULT_METRIC[kind])
    if metric not in allowed_metrics(kind):
        raise InvalidCompetition(
            f"'metric' must be one of {', '.join(allowed_metrics(kind))} for a '{kind}' "
            f"competition; got {metric!r}"
        )
    id_column = _text(body, "id_column", limit=200, default="id") or "id"
    targets = _targets(body, kind)
    opens = parse_time(body.get("opens_at"), field="opens_at")
    closes = parse_time(body.get("closes_at"), field="closes_at")
    if opens and closes and closes <= opens:
        raise BadRequest("'closes_at' must be after 'opens_at'")
    dataset = _frame(body, "dataset", required=True)
    answer = _frame(body, "answer", required=kind != "predict")
    assert dataset is not None
    _check_dataset(dataset, id_column, targets)
    if answer is not None:
        _check_answer(answer, dataset, id_column, targets, partial=kind == "predict")
    fields = {
        "title": _text(body, "title", limit=200),
        "description": _text(body, "description", limit=20000, default=""),
        "type": kind,
        "metric": metric,
        "id_column": id_column,
        "targets": targets,
        "opens_at": opens,
        "closes_at": closes,
        "daily_limit": _number(body, "daily_limit", default=None, low=1, high=1e6, integer=True),
        "public_fraction": _number(body, "public_fraction", default=1.0, low=0.01, high=1.0),
        "classes": _classes(answer, targets, metric) if kind == "classify" else None,
        "rows": len(dataset),
    }
    answer_parquet = None
    if answer is not None:
        answer_parquet = _storable(answer[[id_column, *targets]], "the answer")
    return Hosting(fields, answer, _storable(dataset, "the dataset"), answer_parquet)


def _storable(df: pd.DataFrame, what: str) -> bytes:
    """A frame's Parquet bytes, or an InvalidCompetition naming what cannot be stored."""
    try:
        return frames.to_parquet(df, what=what)
    except BadRequest as exc:
        raise InvalidCompetition(exc.message) from exc


def _check_dataset(dataset: pd.DataFrame, id_column: str, targets: list[str]) -> None:
    """The dataset needs unique ids and must not show the answer."""
    if id_column not in dataset.columns:
        raise InvalidCompetition(
            f"the dataset has no id column '{id_column}'; its columns are "
            f"{', '.join(dataset.columns)} (set 'id_column')"
        )
    if not len(dataset):
        raise InvalidCompetition("the dataset has no rows")
    ids = dataset[id_column]
    kind = pd.api.types.infer_dtype(ids, skipna=True)
    wide = kind == "integer" and ids.dtype == object  # beyond 64 bits: Python ints
    if not ids.isna().any() and (kind not in ("integer", "string") or wide):
        raise InvalidCompetition(
            f"the dataset's '{id_column}' values must be all integers (within 64 bits) or all "
            f"strings, one plain value each; they are {'wide integers' if wide else kind}"
        )
    if ids.isna().any() or ids.duplicated().any():
        raise InvalidCompetition(f"the dataset's '{id_column}' values must be unique and set")
    shown = [t for t in targets if t in dataset.columns]
    if shown:
        raise InvalidCompetition(
            f"the dataset holds the target column(s) {', '.join(shown)}: participants would "
            "see the answer; drop them from the dataset"
        )


def _check_answer(
    answer: pd.DataFrame,
    dataset: pd.DataFrame,
    id_column: str,
    targets: list[str],
    *,
    partial: bool,
) -> None:
    """The answer holds the id and targets, for the dataset's ids (all of them unless partial)."""
    _check_rows(answer, id_column, targets, what="answer")
    if partial:
        return
    expected = np.sort(dataset[id_column].to_numpy())
    ids = np.sort(coerce_ids(answer[id_column].to_numpy(), expected, id_column))
    if len(ids) != len(expected) or not np.array_equal(ids, expected):
        raise InvalidCompetition(
            "the answer must have exactly one row per dataset id (only 'predict' "
            "competitions take answers later or in parts)"
        )


def _check_rows(rows: pd.DataFrame, id_column: str, targets: list[str], *, what: str) -> None:
    """Answer rows need the id and target columns, holding plain values, ids of one kind."""
    missing = [c for c in [id_column, *targets] if c not in rows.columns]
    if missing:
        lack = "lack" if what.endswith("rows") else "lacks"
        raise InvalidCompetition(f"the {what} {lack} column(s) {', '.join(missing)}")
    check_ids(rows[id_column].to_numpy(), id_column, what=what, error=InvalidCompetition)
    for target in targets:
        check_scalars(rows[target].to_numpy(), target, what=what, error=InvalidCompetition)


def _classes(answer: pd.DataFrame | None, targets: list[str], metric: str) -> list[Any]:
    """The sorted class labels of a classify answer."""
    if answer is None:
        raise InvalidCompetition("a 'classify' competition needs its answer to know the classes")
    labels = answer[targets[0]].dropna()
    if pd.api.types.infer_dtype(labels, skipna=True) not in LABEL_KINDS:
        raise InvalidCompetition("class labels must be numbers or strings")
    values = sorted(pd.unique(labels).tolist(), key=lambda v: (str(type(v)), v))
    if len(values) < 2:
        raise InvalidCompetition("a 'classify' answer needs at least two classes")
    if len(set(canonical_labels(values))) != len(values):
        raise InvalidCompetition("class labels must be distinct once written as text")
    return [v.item() if isinstance(v, np.generic) else v for v in values]


# ---------------------------------------------------------------- storing and reading


def create(
    session: Session, *, host: Participant, hosting: Hosting, now: datetime
) -> tuple[Competition, Prepared]:
    """Store a checked competition; returns it with its answer prepared for scoring."""
    fields = dict(hosting.fields)
    fields["opens_at"] = fields["opens_at"] or now
    comp = Competition(
        host_id=host.id,
        split_salt=secrets.token_hex(8),
        dataset_blob_id=blobs.insert_blob(session, hosting.dataset_parquet),
        created_at=now,
        **fields,
    )
    session.add(comp)
    session.flush()
    if hosting.answer is None:
        return comp, prepare(spec(comp), hosting.dataset_parquet, None)
    return comp, _store_answer(
        session, comp, hosting.answer, hosting.dataset_parquet, hosting.answer_parquet
    )


def _store_answer(
    session: Session,
    comp: Competition,
    answer: pd.DataFrame,
    dataset: bytes | None = None,
    data: bytes | None = None,
) -> Prepared:
    """Check answer rows against the dataset's ids and store them (`data`, their Parquet
    bytes, if already made) as the newest version; returns them prepared for scoring, from
    the very bytes stored."""
    if data is None:
        data = _storable(answer[[comp.id_column, *comp.targets]], "the answer")
    if dataset is None:
        dataset = blobs.read(session, comp.dataset_blob_id)
    prepared = prepare(spec(comp), dataset, data)
    comp.answer_blob_id = blobs.insert_blob(session, data)
    comp.answer_rows = len(answer)
    comp.answer_version += 1
    return prepared


def add_answer_rows(session: Session, comp: Competition, rows: pd.DataFrame) -> int:
    """Add or replace answer rows by id; returns how many rows are now known."""
    rows.columns = [str(c) for c in rows.columns]
    _check_rows(rows, comp.id_column, comp.targets, what="answer rows")
    rows = rows[[comp.id_column, *comp.targets]]
    if rows[comp.id_column].duplicated().any():
        raise InvalidCompetition(f"answer rows repeat ids in '{comp.id_column}'")
    if comp.answer_blob_id is not None:
        old = frames.read_parquet(blobs.read(session, comp.answer_blob_id))
        keep = ~old[comp.id_column].astype(str).isin(rows[comp.id_column].astype(str))
        rows = pd.concat([old[keep], rows], ignore_index=True)
    if comp.type == "classify":
        unknown = set(canonical_labels(rows[comp.targets[0]].dropna().to_numpy())) - set(
            canonical_labels(list(comp.classes or ()))
        )
        if unknown:
            raise InvalidCompetition(f"answer rows hold unknown classes: {', '.join(unknown)}")
    _store_answer(session, comp, rows)
    return comp.answer_rows


def get(session: Session, competition_id: int) -> Competition:
    """One competition, or a NotFound that says how to find the right id."""
    comp = session.get(Competition, competition_id) if 0 < competition_id < 2**31 else None
    if comp is None:
        raise NotFound(f"no competition {competition_id}; list them at /api/v1/competitions")
    return comp


STAMP = select(COMPETITIONS.c.answer_blob_id, COMPETITIONS.c.closes_at).where(
    COMPETITIONS.c.id == bindparam("id")
)


def current(session: Session, competition_id: int, cache: dict[int, Competition]) -> Competition:
    """A competition from `cache`, after one light query shows it unchanged (answer, close);
    the query runs once per transaction (a group commit holds many submissions)."""
    checked: dict[int, Competition] = session.info.setdefault("competitions", {})
    if competition_id in checked:
        return checked[competition_id]
    stamp = (
        session.connection().execute(STAMP, {"id": competition_id}).first()
        if competition_id < 2**31
        else None
    )
    if stamp is None:
        raise NotFound(f"no competition {competition_id}; list them at /api/v1/competitions")
    comp = cache.get(competition_id)
    if comp is None or (comp.answer_blob_id, comp.closes_at) != tuple(stamp):
        comp = get(session, competition_id)
        session.expunge(comp)  # detached, so a rollback of this transaction cannot expire it
        cache[competition_id] = comp
    checked[competition_id] = comp
    return comp


def hosted(session: Session, competition_id: int, participant: Participant) -> Competition:
    """A competition that `participant` hosts."""
    comp = get(session, competition_id)
    if comp.host_id != participant.id:
        raise Forbidden(f"only the host of competition {competition_id} may do this")
    return comp


def listing(
    session: Session, *, kind: str | None, state: str | None, now: datetime
) -> list[Competition]:
    """Competitions, newest first, filtered by type and status."""
    if kind is not None and kind not in TYPES:
        raise BadRequest(f"'type' must be one of {', '.join(TYPES)}")
    if state not in (None, "all", *STATUSES):
        raise BadRequest(f"'status' must be one of all, {', '.join(STATUSES)}")
    query = select(Competition).order_by(Competition.id.desc())
    if kind:
        query = query.where(Competition.type == kind)
    comps = list(session.scalars(query))
    if state and state != "all":
        comps = [c for c in comps if status(c, now) == state]
    return comps


def blob(session: Session, blob_id: int | None) -> bytes:
    """A stored frame's Parquet bytes (an empty frame's if none)."""
    if blob_id is None:
        return frames.to_parquet(pd.DataFrame())
    return blobs.read(session, blob_id)
