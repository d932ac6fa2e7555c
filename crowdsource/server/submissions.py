"""Submissions: the rules for accepting one, recording its score, and reading it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from crowdsource.errors import BadRequest, Closed, Forbidden, NotFound, NotOpen, QuotaExceeded
from crowdsource.server import leaderboards
from crowdsource.server.competitions import status
from crowdsource.server.scoring.score import Scored
from crowdsource.server.storage import blobs
from crowdsource.server.storage.tables import (
    SCORES,
    SUBMISSIONS,
    Competition,
    Participant,
    Score,
    Submission,
)
from crowdsource.times import iso, next_midnight

INSERT_SUBMISSION = insert(SUBMISSIONS).returning(SUBMISSIONS.c.id)
INSERT_SCORE = insert(SCORES)


@dataclass(frozen=True)
class Quota:
    """What is left of a daily limit, and when it resets."""

    remaining: int | None
    resets_at: datetime


def check_key(key: str | None) -> str | None:
    """An Idempotency-Key header value, bounded."""
    if key is not None and not 1 <= len(key) <= 200:
        raise BadRequest("the Idempotency-Key header must be 1 to 200 characters")
    return key


def check_open(comp: Competition, participant: Participant, now: datetime) -> None:
    """Refuse the host, and submissions outside the competition's times."""
    if comp.host_id == participant.id:
        raise Forbidden("hosts cannot submit to their own competition; register another name")
    state = status(comp, now)
    if state == "upcoming":
        raise NotOpen(f"competition {comp.id} opens at {iso(comp.opens_at)}; submit after that")
    if state == "closed":
        raise Closed(
            f"competition {comp.id} closed at {iso(comp.closes_at)}; it takes no more submissions"
        )


def quota(session: Session, comp: Competition, participant: Participant, now: datetime) -> Quota:
    """Submissions left today (None without a limit); failed ones do not count."""
    resets = next_midnight(now)
    if comp.daily_limit is None:
        return Quota(None, resets)
    used = session.scalar(
        select(func.count()).where(
            Submission.competition_id == comp.id,
            Submission.participant_id == participant.id,
            Submission.created_at >= resets - timedelta(days=1),
            Submission.state != "failed",
        )
    )
    return Quota(max(comp.daily_limit - int(used or 0), 0), resets)


def check_quota(
    session: Session, comp: Competition, participant: Participant, now: datetime
) -> Quota:
    """Refuse a submission over the daily limit, saying when it resets; else what is left."""
    left = quota(session, comp, participant, now)
    if left.remaining == 0:
        raise QuotaExceeded(
            f"you used all {comp.daily_limit} submissions for today in competition {comp.id}; "
            f"the limit resets at {iso(left.resets_at)}",
            resets_at=left.resets_at,
        )
    return left


def lock(session: Session, comp: Competition, participant: Participant) -> None:
    """Serialise one participant's submissions to one competition (quota check, then insert)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:c, :p)"), {"c": comp.id, "p": participant.id}
        )


def by_key(session: Session, participant: Participant, key: str | None) -> Submission | None:
    """The submission an Idempotency-Key already made, if any."""
    if key is None:
        return None
    return session.scalar(
        select(Submission).where(
            Submission.participant_id == participant.id, Submission.idempotency_key == key
        )
    )


def record(
    session: Session,
    *,
    comp: Competition,
    participant: Participant,
    scored: Scored | None,
    predictions: bytes | int,
    key: str | None,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """Store a submission (scored, awaiting, or pending when `scored` is None) with its
    leaderboard update, in the caller's transaction. `predictions` are bytes to store, or the
    id of a blob the scoring worker stored. Returns its view and whether it is new."""
    lock(session, comp, participant)
    existing = by_key(session, participant, key)
    if existing is not None:
        return as_json(session, existing, comp, participant, now), False
    check_open(comp, participant, now)
    left = check_quota(session, comp, participant, now)
    blob_id = (
        predictions if isinstance(predictions, int) else blobs.insert_blob(session, predictions)
    )
    public = None if scored is None else scored.public_score
    private = None if scored is None else scored.private_score
    row: dict[str, Any] = {
        "competition_id": comp.id,
        "participant_id": participant.id,
        "state": "pending" if scored is None else scored.state,
        "reason": None,
        "public_score": public,
        "private_score": private,
        "predictions_blob_id": blob_id,
        "idempotency_key": key,
        "created_at": now,
        "scored_at": None if scored is None else now,
    }
    row["id"] = session.connection().execute(INSERT_SUBMISSION, row).scalar_one()
    history = []
    if scored is not None:
        history = [_score(session, row["id"], scored, now)]
    leaderboards.apply(
        session,
        comp,
        participant_id=participant.id,
        submission_id=row["id"],
        public=public,
        private=private,
        at=now,
    )
    remaining = None if left.remaining is None else left.remaining - 1
    return view(
        row,
        comp,
        participant,
        now,
        rank=leaderboards.rank(session, comp, participant_id=participant.id),
        left=Quota(remaining, left.resets_at),
        history=history,
    ), True


def _score(session: Session, submission_id: int, scored: Scored, now: datetime) -> dict[str, Any]:
    """Add one scoring to a submission's history; returns it."""
    row = {
        "submission_id": submission_id,
        "public_score": scored.public_score,
        "private_score": scored.private_score,
        "answer_rows": scored.answer_rows,
        "at": now,
    }
    session.connection().execute(INSERT_SCORE, row)
    return row


def settle(
    session: Session,
    comp: Competition,
    sub: Submission,
    scored: Scored,
    *,
    now: datetime,
) -> None:
    """Record a new score for a stored submission, keep the history, and update the boards."""
    sub.state = scored.state
    sub.public_score, sub.private_score = scored.public_score, scored.private_score
    sub.scored_at = now
    sub.reason = None
    _score(session, sub.id, scored, now)
    leaderboards.apply(
        session,
        comp,
        participant_id=sub.participant_id,
        submission_id=sub.id,
        public=sub.public_score,
        private=sub.private_score,
        at=sub.created_at,
        count=False,
    )


def fail(session: Session, comp: Competition, sub: Submission, reason: str) -> None:
    """Mark a submission failed, with the reason its owner sees; it no longer counts against
    the limit, nor on the boards."""
    sub.state, sub.reason = "failed", reason
    leaderboards.rebuild(session, comp)


def pending(session: Session) -> list[Submission]:
    """Submissions acknowledged but not yet scored (to finish after a restart)."""
    return list(session.scalars(select(Submission).where(Submission.state == "pending")))


def get(session: Session, submission_id: int) -> Submission:
    """One submission, or a NotFound."""
    sub = session.get(Submission, submission_id) if 0 < submission_id < 2**31 else None
    if sub is None:
        raise NotFound(f"no submission {submission_id}; list yours at /api/v1/submissions")
    return sub


def visible(session: Session, sub: Submission, participant: Participant) -> Competition:
    """Allow the owner and the competition's host to see a submission."""
    comp = session.get_one(Competition, sub.competition_id)
    if participant.id not in (sub.participant_id, comp.host_id):
        raise NotFound(f"no submission {sub.id}; list yours at /api/v1/submissions")
    return comp


def mine(
    session: Session, participant: Participant, competition_id: int | None = None
) -> list[Submission]:
    """A participant's submissions, newest first."""
    query = select(Submission).where(Submission.participant_id == participant.id)
    if competition_id is not None:
        query = query.where(Submission.competition_id == competition_id)
    return list(session.scalars(query.order_by(Submission.id.desc())))


def history(session: Session, sub: Submission) -> list[dict[str, Any]]:
    """Every scoring of a submission, oldest first."""
    rows = session.execute(
        select(Score.public_score, Score.private_score, Score.answer_rows, Score.at)
        .where(Score.submission_id == sub.id)
        .order_by(Score.id)
    )
    return [dict(r._mapping) for r in rows]


def as_json(
    session: Session,
    sub: Submission,
    comp: Competition,
    owner: Participant,
    now: datetime,
) -> dict[str, Any]:
    """The view of a stored submission."""
    row = {
        c: getattr(sub, c)
        for c in (
            "id",
            "state",
            "reason",
            "public_score",
            "private_score",
            "created_at",
            "scored_at",
        )
    }
    return view(
        row,
        comp,
        owner,
        now,
        rank=leaderboards.rank(session, comp, participant_id=owner.id),
        left=quota(session, comp, owner, now),
        history=history(session, sub),
    )


def view(
    row: dict[str, Any],
    comp: Competition,
    owner: Participant,
    now: datetime,
    *,
    rank: int | None,
    left: Quota,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    """What the API shows of a submission: the private score only once the competition closed."""
    closed = status(comp, now) == "closed"
    return {
        "id": row["id"],
        "competition_id": comp.id,
        "participant": {"id": owner.id, "name": owner.name},
        "state": row["state"],
        "reason": row["reason"],
        "public_score": row["public_score"],
        "private_score": row["private_score"] if closed else None,
        "rank": rank,
        "created_at": iso(row["created_at"]),
        "scored_at": iso(row["scored_at"]),
        "remaining_today": left.remaining,
        "quota_resets_at": iso(left.resets_at),
        "history": [
            {
                "public_score": h["public_score"],
                "private_score": h["private_score"] if closed else None,
                "answer_rows": h["answer_rows"],
                "at": iso(h["at"]),
            }
            for h in history
        ],
    }
