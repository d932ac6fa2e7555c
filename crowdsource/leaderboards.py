"""Leaderboards: best score per participant, kept current as scores are recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from crowdsource.metrics import get_metric
from crowdsource.models import ENTRIES, Competition, Entry, Participant, Submission
from crowdsource.timeutil import iso

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
    table = ENTRIES
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
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
    stmt = insert(table).values(rows)
    new, old = stmt.excluded, table.c
    wins = (
        new.score > old.score if get_metric(comp.metric).higher_is_better else new.score < old.score
    )
    better = new.score.is_not(None) & (old.score.is_(None) | wins)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[old.competition_id, old.board, old.participant_id],
            set_={
                "submissions": old.submissions + new.submissions,
                "last_submission_at": case(
                    (new.submissions > 0, new.last_submission_at), else_=old.last_submission_at
                ),
                "score": case((better, new.score), else_=old.score),
                "best_submission_id": case(
                    (better, new.best_submission_id), else_=old.best_submission_id
                ),
            },
        )
    )


def rebuild(session: Session, comp: Competition) -> None:
    """Recompute a competition's boards from its submissions (after a re-score)."""
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


def rank_of(session: Session, comp: Competition, *, board: str, score: float | None) -> int | None:
    """The rank a score holds on a board: one more than the entries that beat it."""
    if score is None:
        return None
    higher = get_metric(comp.metric).higher_is_better
    beats = Entry.score > score if higher else Entry.score < score
    ahead = session.scalar(
        select(func.count()).where(Entry.competition_id == comp.id, Entry.board == board, beats)
    )
    return int(ahead or 0) + 1


def rank(session: Session, comp: Competition, *, participant_id: int) -> int | None:
    """A participant's current rank on the public board."""
    score = session.scalar(
        select(Entry.score).where(
            Entry.competition_id == comp.id,
            Entry.board == "public",
            Entry.participant_id == participant_id,
        )
    )
    return rank_of(session, comp, board="public", score=score)


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
