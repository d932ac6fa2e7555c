"""Leaderboards: best score per participant, kept current as scores are recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import TextClause, bindparam, delete, select, text
from sqlalchemy.orm import Session

from crowdsource.metrics import get_metric
from crowdsource.server.storage import locks
from crowdsource.server.storage.tables import (
    Competition,
    Entry,
    Participant,
    Submission,
    UTCDateTime,
)
from crowdsource.times import iso

BOARDS = ("public", "private")


def _better(comp: Competition, new: float, old: float | None) -> bool:
    """Whether `new` beats `old` under the competition's metric."""
    if old is None:
        return True
    return new > old if get_metric(comp.metric).higher_is_better else new < old


def apply(
    session: Session,
    comp: Competition,
    *,
    participant_id: int,
    submission_id: int,
    public: float | None,
    private: float | None,
    at: datetime,
    count: bool = True,
) -> None:
    """Fold one recorded score into both boards: one upsert, same transaction as the score."""
    rows = [
        {
            "competition_id": comp.id,
            "board": board,
            "participant_id": participant_id,
            "score": score,
            "best_submission_id": None if score is None else submission_id,
            "submissions": int(count),
            "last_submission_at": at if count else None,
        }
        for board, score in (("public", public), ("private", private))
    ]
    session.connection().execute(UPSERT[get_metric(comp.metric).higher_is_better], rows)


def _upsert(wins: str) -> TextClause:
    """The entry upsert (the same SQL on SQLite and PostgreSQL), keeping the better score."""
    better = f"excluded.score IS NOT NULL AND (entries.score IS NULL OR excluded.score {wins} "
    better += "entries.score)"
    return text(f"""
        INSERT INTO entries (competition_id, board, participant_id, score, best_submission_id,
                             submissions, last_submission_at)
        VALUES (:competition_id, :board, :participant_id, :score, :best_submission_id,
                :submissions, :last_submission_at)
        ON CONFLICT (competition_id, board, participant_id) DO UPDATE SET
            submissions = entries.submissions + excluded.submissions,
            last_submission_at = CASE WHEN excluded.submissions > 0
                THEN excluded.last_submission_at ELSE entries.last_submission_at END,
            score = CASE WHEN {better} THEN excluded.score ELSE entries.score END,
            best_submission_id = CASE WHEN {better}
                THEN excluded.best_submission_id ELSE entries.best_submission_id END
    """).bindparams(bindparam("last_submission_at", type_=UTCDateTime()))


UPSERT = {True: _upsert(">"), False: _upsert("<")}  # by higher_is_better


def rebuild(session: Session, comp: Competition) -> None:
    """Recompute a competition's boards from its submissions (after a re-score)."""
    locks.take(session, [locks.competition(comp.id)])  # no submission writes an entry meanwhile
    session.execute(delete(Entry).where(Entry.competition_id == comp.id))
    session.flush()
    subs = session.scalars(
        select(Submission)
        .where(Submission.competition_id == comp.id, Submission.state != "failed")
        .order_by(Submission.id)
    )
    for sub in subs:
        apply(
            session,
            comp,
            participant_id=sub.participant_id,
            submission_id=sub.id,
            public=sub.public_score,
            private=sub.private_score,
            at=sub.created_at,
        )


def rank(session: Session, comp: Competition, *, participant_id: int) -> int | None:
    """A participant's current rank on the public board (None before a score)."""
    higher = get_metric(comp.metric).higher_is_better
    found = (
        session.connection()
        .execute(RANK[higher], {"competition_id": comp.id, "participant_id": participant_id})
        .scalar()
    )
    return None if found is None else int(found)


def _rank(wins: str) -> TextClause:
    """One more than the entries that beat the participant's public score."""
    return text(f"""
        SELECT (SELECT count(*) FROM entries e
                WHERE e.competition_id = mine.competition_id AND e.board = 'public'
                  AND e.score {wins} mine.score) + 1
        FROM entries mine
        WHERE mine.competition_id = :competition_id AND mine.board = 'public'
          AND mine.participant_id = :participant_id AND mine.score IS NOT NULL
    """)


RANK = {True: _rank(">"), False: _rank("<")}  # by higher_is_better


def board(session: Session, comp: Competition, *, name: str) -> dict[str, Any]:
    """One board, ranked (ties share a rank; participants with no score yet come last)."""
    metric = get_metric(comp.metric)
    order = Entry.score.desc() if metric.higher_is_better else Entry.score.asc()
    rows = session.execute(
        select(Entry, Participant.name)
        .join(Participant, Participant.id == Entry.participant_id)
        .where(Entry.competition_id == comp.id, Entry.board == name)
        .order_by(Entry.score.is_(None), order, Entry.last_submission_at)
    ).all()
    entries: list[dict[str, Any]] = []
    for i, (entry, pname) in enumerate(rows):
        tied = entries and entries[-1]["score"] == entry.score
        rank = None if entry.score is None else (entries[-1]["rank"] if tied else i + 1)
        entries.append(
            {
                "rank": rank,
                "participant": {"id": entry.participant_id, "name": pname},
                "score": entry.score,
                "submissions": entry.submissions,
                "last_submission_at": iso(entry.last_submission_at),
            }
        )
    return {
        "competition_id": comp.id,
        "title": comp.title,
        "board": name,
        "metric": comp.metric,
        "higher_is_better": metric.higher_is_better,
        "entries": entries,
    }
