"""Competitions: hosting from DataFrames, listing, answers that arrive later, closing."""

from __future__ import annotations

import asyncio
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from crowdsource import frames
from crowdsource.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidCompetition,
    NotFound,
    Unavailable,
)
from crowdsource.metrics import DEFAULT_METRIC, allowed_metrics, get_metric
from crowdsource.server import ladder
from crowdsource.server.events import RESYNC, Event, EventBus
from crowdsource.server.scoring import workers as jobs
from crowdsource.server.scoring.score import (
    Prepared,
    Spec,
    canonical_labels,
    check_ids,
    check_scalars,
    coerce_ids,
    prepare,
    prepare_truth,
)
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage import blobs, locks
from crowdsource.server.storage.engine import unavailable
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import (
    COMPETITIONS,
    Competition,
    Entry,
    Participant,
    Submission,
)
from crowdsource.server.tasks import Background
from crowdsource.times import iso, parse_time, utcnow

TYPES = ("classify", "regress", "predict", "cluster")
MAX_FINALS = 100  # the most final submissions a host may let each participant select
EDITABLE = ("title", "description", "closes_at", "daily_limit")
STATUSES = ("upcoming", "open", "closed")
LABEL_KINDS = ("string", "integer", "floating", "boolean", "mixed-integer-float")


@dataclass(frozen=True)
class Hosting:
    """A checked competition: its fields, its frames' Parquet bytes to store, and its answer
    prepared for scoring from those very bytes (before any transaction)."""

    fields: dict[str, Any]
    dataset_parquet: bytes
    answer_parquet: bytes | None
    answer_rows: int
    prepared: Prepared


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
        "max_team_size": comp.max_team_size,
        "public_fraction": comp.public_fraction,
        "status": status(comp, now),
        "rows": comp.rows,
        "answer_rows": comp.answer_rows,
        "final_submissions": comp.final_submissions,
        "public_scoring": comp.public_scoring,
        "ladder_step": comp.ladder_step if comp.public_scoring == "ladder" else None,
        "archived": comp.archived,
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


PARTS = ("spec", "dataset", "answer")  # the parts of a multipart/form-data create request


def receive(body: frames.Body, content_type: str | None) -> tuple[Any, dict[str, bytes]]:
    """A create request's spec, and the frames sent beside it as Parquet parts: from a
    multipart/form-data body (a JSON `spec` part, `dataset` and `answer` parts), or JSON."""
    if content_type is None or not frames.is_form(content_type):
        return frames.parse_json(frames.as_bytes(body)), {}
    parts = frames.read_form(body, content_type)
    if "spec" not in parts or any(name not in PARTS for name in parts):
        raise BadRequest(
            "a form creating a competition has a 'spec' part (JSON: title, type, targets, ...) "
            f"and Parquet parts 'dataset' and 'answer'; got {', '.join(parts) or 'no parts'}"
        )
    spec = frames.parse_json(parts.pop("spec"))
    both = [name for name in parts if isinstance(spec, dict) and spec.get(name) is not None]
    if both:
        raise BadRequest(f"'{both[0]}' is sent twice, as a part and inside 'spec'; keep one")
    return spec, parts


@dataclass(frozen=True)
class _Frame:
    """A frame as received; sent as Parquet, also its Arrow table, and its bytes when they
    can be stored as sent."""

    df: pd.DataFrame
    sent: bytes | None = None
    table: pa.Table | None = None


def _frame(
    body: dict[str, Any], parts: dict[str, bytes], key: str, *, required: bool
) -> _Frame | None:
    """A frame field: a Parquet part, or a frame inside the JSON spec."""
    if key in parts:
        got = _parquet_part(key, parts[key])
    elif body.get(key) is not None:
        got = _Frame(frames.decode_frame(body[key], what=key))
    elif required:
        raise BadRequest(f"'{key}' is required: a frame (records, split form or Parquet)")
    else:
        return None
    got.df.columns = [str(c) for c in got.df.columns]
    if not got.df.columns.is_unique:  # Parquet may repeat a name; split form may not either
        raise BadRequest(f"{key}: column names must be unique")
    return got


def _parquet_part(key: str, data: bytes) -> _Frame:
    """A frame sent as a Parquet part. Its bytes are stored as sent when reading them back
    gives this very frame: no index kept in them, its columns the file's own, by name."""
    try:
        table = frames.read_table(data)
        df = table.to_pandas(use_threads=False)
    except BadRequest as exc:
        raise BadRequest(f"the '{key}' part: {exc.message}") from exc
    except frames.UNREADABLE as exc:
        raise BadRequest(f"the '{key}' part: its pandas metadata is unreadable ({exc})") from exc
    index = df.index
    plain = isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
    as_sent = plain and index.name is None and list(df.columns) == table.column_names
    return _Frame(df, data if as_sent else None, table)


def check(body: frames.Body, content_type: str | None = None) -> Hosting:
    """Check a create request and return what to store, or say what to fix."""
    return _check(*receive(body, content_type))


def _check(body: Any, parts: dict[str, bytes]) -> Hosting:
    """Check a spec and its frames, and prepare the answer for scoring (off the write
    transaction, from the very bytes that will be stored)."""
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
    sent = _frame(body, parts, "dataset", required=True)
    answered = _frame(body, parts, "answer", required=kind != "predict")
    assert sent is not None
    dataset, answer = sent.df, None if answered is None else answered.df
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
        "max_team_size": _number(body, "max_team_size", default=5, low=1, high=1000, integer=True),
        "public_fraction": _number(body, "public_fraction", default=1.0, low=0.01, high=1.0),
        "final_submissions": _number(
            body, "final_submissions", default=2, low=1, high=MAX_FINALS, integer=True
        ),
        "public_scoring": _choice(body, "public_scoring", ladder.SCORINGS, default="plain"),
        "ladder_step": _number(
            body, "ladder_step", default=ladder.DEFAULT_STEP, low=1e-9, high=1e9
        ),
        "classes": _classes(answer, targets, metric) if kind == "classify" else None,
        "rows": len(dataset),
        "split_salt": secrets.token_hex(8),
    }
    answer_parquet = None
    if answered is not None:
        answer_parquet = _answer_parquet(answered, [id_column, *targets])
    dataset_parquet = sent.sent or _storable(dataset, "the dataset")
    draft = spec(Competition(**fields, dataset_blob_id=0))  # the spec, before any id is known
    if dataset_parquet is sent.sent and (answered is None or answer_parquet is answered.sent):
        prepared = _prepare_as_sent(draft, sent, answered)
    else:
        prepared = prepare(draft, dataset_parquet, answer_parquet)
    rows = 0 if answered is None else len(answered.df)
    return Hosting(fields, dataset_parquet, answer_parquet, rows, prepared)


def _prepare_as_sent(draft: Spec, dataset: _Frame, answer: _Frame | None) -> Prepared:
    """What `prepare` makes of the stored bytes, from the frames already read from those very
    bytes (stored as sent), rather than reading them again."""
    assert dataset.table is not None
    ids = dataset.table.column(draft.id_column).to_numpy(zero_copy_only=False)
    expected = np.sort(ids)
    return expected, None if answer is None else prepare_truth(draft, answer.df, expected)


def _answer_parquet(answer: _Frame, columns: list[str]) -> bytes:
    """The answer's bytes to store: as sent if they hold just the id and targets, in order."""
    if answer.sent is not None and list(answer.df.columns) == columns:
        return answer.sent
    return _storable(answer.df[columns], "the answer")


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
    empty = int(rows[id_column].isna().sum())
    if empty:
        raise InvalidCompetition(
            f"{empty} rows of the {what} have no '{id_column}': give every row its id"
        )
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


def create(session: Session, *, host: Participant, hosting: Hosting, now: datetime) -> Competition:
    """Store a checked competition: its frames' bytes as checked, then its row."""
    dataset = blobs.insert_blob(session, hosting.dataset_parquet)
    answer = hosting.answer_parquet
    answer_id = None if answer is None else blobs.insert_blob(session, answer)
    comp = Competition(
        **{**hosting.fields, "opens_at": hosting.fields["opens_at"] or now},
        host_id=host.id,
        dataset_blob_id=dataset,
        answer_blob_id=answer_id,
        answer_rows=hosting.answer_rows,
        answer_version=0 if answer_id is None else 1,
        created_at=now,
    )
    session.add(comp)
    session.flush()
    return comp


@dataclass(frozen=True)
class MergedAnswer:
    """Answer rows merged with the stored ones, checked and encoded: ready to store in a
    short transaction, if the answer is still the one they were merged with."""

    based_on: int | None  # the stored answer merged with
    data: bytes
    rows: int


def merge_answer_rows(
    comp: Competition, stored: bytes | None, dataset: bytes, rows: pd.DataFrame
) -> MergedAnswer:
    """Add or replace answer rows by id in the stored answer (CPU work, no transaction);
    check them against the dataset's ids and the competition's classes."""
    rows = rows.rename(columns=str)
    _check_rows(rows, comp.id_column, comp.targets, what="answer rows")
    rows = rows[[comp.id_column, *comp.targets]]
    if rows[comp.id_column].duplicated().any():
        raise InvalidCompetition(f"answer rows repeat ids in '{comp.id_column}'")
    if stored is not None:
        old = frames.read_parquet(stored)
        keep = ~old[comp.id_column].astype(str).isin(rows[comp.id_column].astype(str))
        rows = pd.concat([old[keep], rows], ignore_index=True)
    if comp.type == "classify":
        unknown = set(canonical_labels(rows[comp.targets[0]].dropna().to_numpy())) - set(
            canonical_labels(list(comp.classes or ()))
        )
        if unknown:
            raise InvalidCompetition(f"answer rows hold unknown classes: {', '.join(unknown)}")
    data = _storable(rows, "the answer")
    prepare(spec(comp), dataset, data)  # checks the ids against the dataset's
    return MergedAnswer(comp.answer_blob_id, data, len(rows))


def store_answer(session: Session, comp: Competition, merged: MergedAnswer) -> bool:
    """Store merged answer rows as the newest version, unless another answer was stored
    since they were merged (False: merge again). The competition's row is locked and read
    again first, so rows added at the same time are merged one after another."""
    session.refresh(comp, with_for_update={"key_share": True})  # submissions still insert
    if comp.answer_blob_id != merged.based_on:
        return False
    comp.answer_blob_id = blobs.insert_blob(session, merged.data)
    comp.answer_rows = merged.rows
    comp.answer_version += 1
    return True


def get(session: Session, competition_id: int) -> Competition:
    """One competition, or a NotFound that says how to find the right id."""
    comp = session.get(Competition, competition_id) if 0 < competition_id < 2**31 else None
    if comp is None:
        raise NotFound(f"no competition {competition_id}; list them at /api/v1/competitions")
    return comp


STAMP = select(
    COMPETITIONS.c.answer_blob_id, COMPETITIONS.c.closes_at, COMPETITIONS.c.revision
).where(COMPETITIONS.c.id == bindparam("id"))


def current(session: Session, competition_id: int, cache: dict[int, Competition]) -> Competition:
    """A competition from `cache`, after one light query shows it unchanged (answer, close,
    the host's edits);
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
    if comp is None or (comp.answer_blob_id, comp.closes_at, comp.revision) != tuple(stamp):
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


# ---------------------------------------------------------------- the host's tools


def check_edit(body: Any, comp: Competition, now: datetime) -> dict[str, Any]:
    """The fields a host's edit changes, checked, or a BadRequest saying what to fix."""
    if not isinstance(body, dict) or not body:
        raise BadRequest(f"send a JSON object with any of {', '.join(EDITABLE)}")
    unknown = [str(k) for k in body if k not in EDITABLE]
    if unknown:
        raise BadRequest(
            f"{', '.join(unknown)} cannot be edited; send any of {', '.join(EDITABLE)}"
        )
    changes: dict[str, Any] = {}
    if "title" in body:
        changes["title"] = _text(body, "title", limit=200)
    if "description" in body:
        changes["description"] = _text(body, "description", limit=20000, default="")
    if "daily_limit" in body:
        changes["daily_limit"] = _number(
            body, "daily_limit", default=None, low=1, high=1e6, integer=True
        )
    if "closes_at" in body:
        closes = parse_time(body["closes_at"], field="closes_at")
        if closes is not None and closes <= max(now, comp.opens_at):
            raise BadRequest(
                "'closes_at' must be in the future and after 'opens_at' (null: never closes); "
                f"POST /api/v1/competitions/{comp.id}/close closes it now"
            )
        changes["closes_at"] = closes
    return changes


def not_archived(comp: Competition) -> Competition:
    """Refuse to change an archived competition."""
    if comp.archived:
        raise Conflict(f"competition {comp.id} is archived; it can be read but not changed")
    return comp


def edit(session: Session, comp: Competition, changes: dict[str, Any], now: datetime) -> bool:
    """Apply a host's checked edit; returns whether it reopened a closed competition (a
    later close time: its close is announced again when that time comes)."""
    was_closed = status(comp, now) == "closed"
    for key, value in changes.items():
        setattr(comp, key, value)
    comp.revision += 1  # writers holding a cached copy read it again
    if "closes_at" in changes:
        comp.closed_announced = False
    return was_closed and status(comp, now) != "closed"


def remove(session: Session, comp: Competition, now: datetime) -> bool:
    """Delete a competition that has no submissions (True), else archive it (False): hidden
    from lists, readable by id, closed now if still open."""
    locks.take(session, [locks.competition(comp.id)])  # no submission is recorded meanwhile
    if session.scalar(select(Submission.id).where(Submission.competition_id == comp.id).limit(1)):
        comp.archived = True
        comp.revision += 1
        if status(comp, now) != "closed":
            comp.closes_at = now
        return False
    blob_ids = [comp.dataset_blob_id, comp.answer_blob_id]
    session.delete(comp)
    session.flush()
    for blob_id in blob_ids:
        if blob_id is not None:
            blobs.delete_blob(session, blob_id)
    return True


def participant_named(session: Session, who: Any) -> Participant:
    """A participant by id (a number) or by name (a string), or a NotFound."""
    if isinstance(who, int) and not isinstance(who, bool) and 0 < who < 2**31:
        found = session.get(Participant, who)
    elif isinstance(who, str) and who.strip():
        found = session.scalar(select(Participant).where(Participant.name == who.strip()))
    else:
        raise BadRequest("'participant' must be a participant's id or name")
    if found is None:
        raise NotFound(f"no participant {who!r}; list them at /api/v1/participants")
    return found


def disqualify(session: Session, comp: Competition, body: Any) -> Participant:
    """Disqualify a participant with a reason: their entries leave the boards and their
    submissions are refused with that reason."""
    if not isinstance(body, dict):
        raise BadRequest('send {"participant": id or name, "reason": "..."}')
    who = participant_named(session, body.get("participant"))
    reason = _text(body, "reason", limit=1000)
    if who.id == comp.host_id:
        raise BadRequest("the host cannot be disqualified from their own competition")
    locks.take(session, [locks.competition(comp.id)])
    comp.disqualified = {**comp.disqualified, str(who.id): reason}
    comp.revision += 1
    session.execute(
        delete(Entry).where(Entry.competition_id == comp.id, Entry.participant_id == who.id)
    )
    return who


def requalify(session: Session, comp: Competition, participant_id: int) -> None:
    """Lift a disqualification (the participant's entries are rebuilt by the caller)."""
    if str(participant_id) not in comp.disqualified:
        raise NotFound(
            f"participant {participant_id} is not disqualified from competition {comp.id}"
        )
    comp.disqualified = {k: v for k, v in comp.disqualified.items() if k != str(participant_id)}
    comp.revision += 1


def disqualified(session: Session, comp: Competition) -> list[dict[str, Any]]:
    """Who is disqualified from a competition, and why."""
    out = []
    for key, reason in comp.disqualified.items():
        who = session.get_one(Participant, int(key))
        out.append({"participant": {"id": who.id, "name": who.name}, "reason": reason})
    return out


def listing(
    session: Session, *, kind: str | None, state: str | None, now: datetime
) -> list[Competition]:
    """Competitions, newest first, filtered by type and status (archived ones are hidden)."""
    if kind is not None and kind not in TYPES:
        raise BadRequest(f"'type' must be one of {', '.join(TYPES)}")
    if state not in (None, "all", *STATUSES):
        raise BadRequest(f"'status' must be one of all, {', '.join(STATUSES)}")
    query = select(Competition).where(~Competition.archived).order_by(Competition.id.desc())
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


CLOSE_RETRY_SECONDS = 5.0  # a close that found the database away is tried again after this
BODY_BYTES_PER_ROW = 16  # a submission's Parquet size per row, roughly: it picks where to score


class CompetitionManager(LoggingConfigurable):
    """Hosting, reading, resolving and closing competitions, with the caches their readers
    need: scoring specs, competitions checked per transaction, small datasets in memory."""

    datasets_kept = Integer(64, help="Small datasets served from memory, newest kept.").tag(
        config=True
    )
    dataset_kept_kb = Integer(1024, help="Largest dataset (KiB) served from memory.").tag(
        config=True
    )

    def __init__(self, *, store: Store, bus: EventBus, workers: Workers, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.bus = bus
        self.workers = workers
        self.tasks = Background()
        self._specs: dict[int, Spec] = {}
        self._comps: dict[int, Competition] = {}  # checked against the database on each use
        self._datasets: OrderedDict[int, bytes] = OrderedDict()  # they never change
        self._timers: dict[int, asyncio.TimerHandle] = {}
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        """A competition resolved in any process has a new answer: forget its spec (all of
        them after a resync: the bus may have missed events); a deleted one, its dataset."""
        if event.type == RESYNC:
            self._specs.clear()
        if event.type == "competition.resolved":
            self._specs.pop(event.competition_id, None)
        if event.type == "competition.deleted":  # its id may not serve a stale dataset
            self._specs.pop(event.competition_id, None)
            self._datasets.pop(event.competition_id, None)

    def publish(self, kind: str, competition_id: int, **data: Any) -> None:
        """Announce a committed change to every process."""
        self.bus.publish(Event(kind, competition_id, data))

    def view(self, session: Session, comp: Competition) -> dict[str, Any]:
        """A competition's public view."""
        return as_json(comp, session.get_one(Participant, comp.host_id), utcnow())

    def current(self, session: Session, competition_id: int) -> Competition:
        """A competition for a write, from the cache once a light query shows it unchanged."""
        return current(session, competition_id, self._comps)

    async def spec(self, competition_id: int) -> Spec:
        """A competition's scoring spec, cached until its answer changes."""
        found = self._specs.get(competition_id)
        if found is None:
            found = await self.store.tx(lambda s: spec(get(s, competition_id)))
            self._specs[competition_id] = found
        return found

    def forget_spec(self, competition_id: int) -> None:
        """Drop a cached spec (its answer changed here)."""
        self._specs.pop(competition_id, None)

    # ------------------------------------------------------------ reading

    async def listing(self, *, kind: str | None, state: str | None) -> list[dict[str, Any]]:
        """Competitions, newest first."""
        return (await self.page(kind=kind, state=state))[0]

    async def page(
        self, *, kind: str | None, state: str | None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        """A page of competitions, newest first, and how many there are."""

        def run(session: Session) -> tuple[list[dict[str, Any]], int]:
            found = listing(session, kind=kind, state=state, now=utcnow())
            shown = found[offset:] if limit is None else found[offset : offset + limit]
            return [self.view(session, c) for c in shown], len(found)

        return await self.store.tx(run)

    async def get(self, competition_id: int) -> dict[str, Any]:
        """One competition's public view."""
        return await self.store.tx(lambda s: self.view(s, get(s, competition_id)))

    async def dataset(self, competition_id: int) -> bytes:
        """The dataset participants see, as Parquet (small ones from memory: every competitor
        fetches it the moment a competition is posted)."""
        data = self._datasets.get(competition_id)
        if data is None:
            data = await self.store.tx(lambda s: blob(s, get(s, competition_id).dataset_blob_id))
            self._keep_dataset(competition_id, data)
        return data

    def _keep_dataset(self, competition_id: int, data: bytes) -> None:
        """Remember a small dataset, forgetting the oldest beyond `datasets_kept`."""
        if len(data) <= self.dataset_kept_kb * 1024:
            self._datasets[competition_id] = data
            while len(self._datasets) > self.datasets_kept:
                self._datasets.popitem(last=False)

    async def answer(self, competition_id: int, viewer: Participant) -> bytes:
        """The answer rows known so far, for the host only."""
        return await self.store.tx(
            lambda s: blob(s, hosted(s, competition_id, viewer).answer_blob_id)
        )

    # ------------------------------------------------------------ hosting and resolving

    async def host(
        self, host: Participant, body: frames.Body, content_type: str | None
    ) -> dict[str, Any]:
        """Host a competition from a request body (a JSON spec with its frames, or a form with
        Parquet parts), checked and its answer prepared off the event loop, before the write."""
        hosting = await self.store.in_thread(check, body, content_type)

        def run(session: Session) -> tuple[dict[str, Any], Spec]:
            comp = create(session, host=host, hosting=hosting, now=utcnow())
            return as_json(comp, host, utcnow()), spec(comp)

        data, found = await self.store.tx(run)
        self._specs[data["id"]] = found
        self._keep_dataset(data["id"], hosting.dataset_parquet)
        if self.workers.in_process(data["rows"] * BODY_BYTES_PER_ROW):
            jobs.CACHE.put(self.store.url, found, hosting.prepared)  # scored here
        else:
            self.tasks.spawn(self.preload(data["id"], rows=data["rows"]))
        self.schedule_close(data["id"], data["closes_at"])
        self.publish("competition.created", data["id"], **data)
        return data

    async def preload(self, competition_id: int, *, rows: int) -> None:
        """Load the answer where its submissions will be scored, before the first arrives."""
        found = await self.spec(competition_id)
        try:
            await self.workers.run(rows * BODY_BYTES_PER_ROW, jobs.preload, self.store.url, found)
        except Unavailable as exc:  # only a head start: the first submission loads it
            self.log.warning("competition %s: answer not preloaded: %s", competition_id, exc)

    async def add_rows(
        self, competition_id: int, viewer: Participant, body: frames.Body, content_type: str | None
    ) -> tuple[int, Spec]:
        """Add answer rows (host only); returns how many are known and the new spec."""
        rows = await self.store.in_thread(
            lambda: frames.decode_body(body, content_type, key="rows")
        )

        def read(session: Session) -> tuple[Competition, bytes | None, bytes]:
            comp = hosted(session, competition_id, viewer)
            stored = (
                None if comp.answer_blob_id is None else blobs.read(session, comp.answer_blob_id)
            )
            return comp, stored, blobs.read(session, comp.dataset_blob_id)

        def write(session: Session, merged: MergedAnswer) -> tuple[int, Spec] | None:
            comp = hosted(session, competition_id, viewer)
            return (comp.answer_rows, spec(comp)) if store_answer(session, comp, merged) else None

        while True:  # merged outside any transaction; stored if no other answer came meanwhile
            comp, stored, dataset = await self.store.tx(read)
            merged = await self.store.in_thread(merge_answer_rows, comp, stored, dataset, rows)
            done = await self.store.tx(write, merged)
            if done is not None:
                self.forget_spec(competition_id)
                return done

    # ------------------------------------------------------------ the host's tools

    async def edit(self, competition_id: int, viewer: Participant, body: Any) -> dict[str, Any]:
        """Edit title, description, close time or daily limit (host only); a later close
        time reopens a closed competition, and its close timer follows."""

        def run(session: Session) -> tuple[dict[str, Any], bool]:
            comp = not_archived(hosted(session, competition_id, viewer))
            now = utcnow()
            reopened = edit(session, comp, check_edit(body, comp, now), now)
            return self.view(session, comp), reopened

        data, reopened = await self.store.tx(run)
        self._cancel_close(competition_id)
        self.schedule_close(competition_id, data["closes_at"])
        self.publish("competition.updated", competition_id, **data, reopened=reopened)
        self.publish("leaderboard.changed", competition_id)
        return data

    async def remove(self, competition_id: int, viewer: Participant) -> dict[str, Any]:
        """Delete a competition with no submissions, else archive it (host only)."""

        def run(session: Session) -> tuple[bool, str | None]:
            comp = hosted(session, competition_id, viewer)
            if comp.archived:
                return False, None
            deleted = remove(session, comp, utcnow())
            return deleted, None if deleted else iso(comp.closes_at)

        deleted, closes_at = await self.store.tx(run)
        self._cancel_close(competition_id)
        if closes_at is not None:
            self.schedule_close(competition_id, closes_at)
        data = {"id": competition_id, "deleted": deleted, "archived": not deleted}
        self.publish("competition.deleted", competition_id, **data)
        if not deleted:  # an archived board is still read by id
            self.publish("leaderboard.changed", competition_id)
        return data

    async def disqualify(
        self, competition_id: int, viewer: Participant, body: Any
    ) -> dict[str, Any]:
        """Disqualify a participant with a reason (host only)."""

        def run(session: Session) -> dict[str, Any]:
            comp = not_archived(hosted(session, competition_id, viewer))
            who = disqualify(session, comp, body)
            reason = comp.disqualified[str(who.id)]
            return {"participant": {"id": who.id, "name": who.name}, "reason": reason}

        data = await self.store.tx(run)
        self.publish("leaderboard.changed", competition_id)
        return data

    async def requalify(
        self, competition_id: int, viewer: Participant, participant_id: int
    ) -> dict[str, Any]:
        """Lift a disqualification (host only); the boards are rebuilt with them again."""
        from crowdsource.server import leaderboards  # it builds on this module

        def run(session: Session) -> dict[str, Any]:
            comp = not_archived(hosted(session, competition_id, viewer))
            requalify(session, comp, participant_id)
            leaderboards.rebuild(session, comp)
            return {"disqualified": disqualified(session, comp)}

        data = await self.store.tx(run)
        self.publish("leaderboard.changed", competition_id)
        return data

    async def disqualified(self, competition_id: int, viewer: Participant) -> dict[str, Any]:
        """Who is disqualified, and why (host only)."""
        return await self.store.tx(
            lambda s: {"disqualified": disqualified(s, hosted(s, competition_id, viewer))}
        )

    def _cancel_close(self, competition_id: int) -> None:
        """Stop this process's close timer of a competition (its close time changed)."""
        timer = self._timers.pop(competition_id, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------ closing

    async def close_now(self, competition_id: int, viewer: Participant) -> dict[str, Any]:
        """Close a competition now (host only)."""

        def run(session: Session) -> None:
            comp = hosted(session, competition_id, viewer)
            now = utcnow()
            if status(comp, now) != "closed":
                comp.closes_at = now

        await self.store.tx(run)
        await self._announce_close(competition_id)
        return await self.get(competition_id)

    def schedule_close(self, competition_id: int, closes_at: str | None) -> None:
        """Announce the close when the time comes (a timer for that moment, not a poll)."""
        if closes_at is None:
            return
        delay = (datetime.fromisoformat(closes_at) - utcnow()).total_seconds()
        loop = asyncio.get_running_loop()
        old = self._timers.pop(competition_id, None)
        if old is not None:
            old.cancel()
        self._timers[competition_id] = loop.call_later(
            min(max(delay, 0), 86_400 * 30) + 0.01,  # past a month: checked again then
            lambda: self.tasks.spawn(self._announce_close(competition_id)),
        )

    async def _announce_close(self, competition_id: int) -> None:
        """Publish `competition.closed` once, whichever process gets there first; a timer
        that fired early (the close is more than a month away) is set again."""
        self._timers.pop(competition_id, None)

        def run(session: Session) -> tuple[dict[str, Any] | None, datetime | None]:
            done = session.execute(
                update(Competition)
                .where(
                    Competition.id == competition_id,
                    ~Competition.closed_announced,
                    Competition.closes_at <= utcnow(),
                )
                .values(closed_announced=True)
            )
            comp = session.get(Competition, competition_id)
            if getattr(done, "rowcount", 0) and comp is not None:
                return self.view(session, comp), None
            pending = comp is not None and not comp.closed_announced
            return None, comp.closes_at if pending and comp is not None else None

        try:
            announced, later = await self.store.tx(run)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.log.warning("closing competition %s waits for the database", competition_id)
            self._retry_close(competition_id)
            return
        if announced is not None:
            self.publish("competition.closed", competition_id, **announced)
            self.publish("leaderboard.changed", competition_id)
        elif later is not None:
            self.schedule_close(competition_id, later.isoformat())

    def _retry_close(self, competition_id: int) -> None:
        """Try to announce a close again in a few seconds (the database was away)."""
        self._timers[competition_id] = asyncio.get_running_loop().call_later(
            CLOSE_RETRY_SECONDS, lambda: self.tasks.spawn(self._announce_close(competition_id))
        )

    async def recover(self) -> None:
        """After a start: set a timer for every close not yet announced."""
        found = await self.store.tx(
            lambda s: [
                (c.id, c.closes_at)
                for c in s.scalars(select(Competition).where(~Competition.closed_announced))
            ]
        )
        for competition_id, closes_at in found:
            if closes_at is not None:
                self.schedule_close(competition_id, closes_at.isoformat())

    def close(self) -> None:
        """Cancel timers and background work."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.tasks.cancel()
