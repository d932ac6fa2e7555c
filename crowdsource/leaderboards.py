"""Leaderboards: best score per participant, kept current as scores are recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from crowdsource.metrics import get_metric
from crowdsource.models import Competition, Entry, Participant, Submission
from crowdsource.timeutil import iso

BOARDS = ("public", "private")


def _better(comp: Competition, new: float, old: float | None) -> bool:
    """Whether `new` beats `old` under the competition's metric."""
    if old is None:
        return True
    return new > old if get_metric(comp.metric).higher_is_better else new < old


def apply(session: Session, comp: Competition, sub: Submission, *, count: bool = True) -> None:
    """Fold one recorded submission into both boards (same transaction as the score)."""
    entries = {
        e.board: e
        for e in session.scalars(
            select(Entry).where(
                Entry.competition_id == comp.id, Entry.participant_id == sub.participant_id
            )
        )
    }
    for board, score in (("public", sub.public_score), ("private", sub.private_score)):
        entry = entries.get(board)
        if entry is None:
            entry = Entry(
                competition_id=comp.id,
                board=board,
                participant_id=sub.participant_id,
                submissions=0,
            )
            session.add(entry)
        if count:
            entry.submissions += 1
            entry.last_submission_at = sub.created_at
        if score is not None and _better(comp, score, entry.score):
            entry.score = score
            entry.best_submission_id = sub.id


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
        apply(session, comp, sub)
        session.flush()


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


def rank(session: Session, comp: Competition, *, participant: Participant) -> int | None:
    """A participant's current rank on the public board."""
    entry = session.get(Entry, (comp.id, "public", participant.id))
    return None if entry is None else rank_of(session, comp, board="public", score=entry.score)


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
