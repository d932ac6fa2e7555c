"""Final submissions: which of a participant's submissions count on the private board.

As on Kaggle, the private board ranks each participant by the best private score among
their final submissions: the ones they selected (up to the competition's
`final_submissions`), or without a selection their best ones by public score. So many
random submissions cannot win the private board by luck.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from crowdsource.errors import BadRequest, Closed, Forbidden
from crowdsource.metrics import get_metric
from crowdsource.server.competitions import status
from crowdsource.server.storage.tables import FINALS, Competition, Final, Participant, Submission
from crowdsource.times import iso


@dataclass(frozen=True)
class Candidate:
    """What choosing final submissions needs to know of one submission."""

    id: int
    participant_id: int
    public_score: float | None
    private_score: float | None
    created_at: datetime


def counted(
    candidates: Sequence[Candidate], *, selected: Iterable[int], limit: int, higher_is_better: bool
) -> list[Candidate]:
    """One participant's final submissions: the ones they selected, else their `limit` best
    by public score (the earlier first on a tie; unscored ones last)."""
    chosen = set(selected)
    picked = [c for c in candidates if c.id in chosen]
    if picked:
        return picked
    sign = -1.0 if higher_is_better else 1.0

    def order(c: Candidate) -> tuple[bool, float, int]:
        """Scored before unscored, better before worse, earlier before later."""
        return (c.public_score is None, sign * (c.public_score or 0.0), c.id)

    return sorted(candidates, key=order)[:limit]


def best_private(finals: Sequence[Candidate], *, higher_is_better: bool) -> Candidate | None:
    """The final submission with the best private score (the earlier on a tie), if any."""
    scored = [c for c in finals if c.private_score is not None]
    if not scored:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(scored, key=lambda c: (sign * (c.private_score or 0.0), c.id))


def candidates(
    session: Session, competition_id: int, members: Iterable[int] | None = None
) -> list[Candidate]:
    """The submissions that may count (not failed), of everyone or of one participant or
    team (its `members`)."""
    query = select(
        Submission.id,
        Submission.participant_id,
        Submission.public_score,
        Submission.private_score,
        Submission.created_at,
    ).where(Submission.competition_id == competition_id, Submission.state != "failed")
    if members is not None:
        query = query.where(Submission.participant_id.in_(list(members)))
    return [Candidate(*row) for row in session.execute(query.order_by(Submission.id))]


def selections(
    session: Session, competition_id: int, members: Iterable[int] | None = None
) -> set[int]:
    """The submission ids selected as final, by everyone or by one participant or team."""
    query = select(Final.submission_id).where(Final.competition_id == competition_id)
    if members is not None:
        query = query.where(Final.participant_id.in_(list(members)))
    return set(session.scalars(query))


@dataclass(frozen=True)
class Standing:
    """One participant's submissions that may count, and the final ones among them."""

    submissions: list[Candidate]
    finals: list[Candidate]


def standings(
    session: Session, comp: Competition, captains: Mapping[int, int]
) -> dict[int, Standing]:
    """Every participant's (or team's) submissions and final submissions to a competition,
    by participant id (a team's by its captain's, `captains` mapping each member to it): what
    the private board and the host's list are built from."""
    higher = get_metric(comp.metric).higher_is_better
    selected = selections(session, comp.id)
    mine: dict[int, list[Candidate]] = {}
    for candidate in candidates(session, comp.id):
        entrant = captains.get(candidate.participant_id, candidate.participant_id)
        mine.setdefault(entrant, []).append(candidate)
    return {
        participant_id: Standing(
            subs,
            counted(subs, selected=selected, limit=comp.final_submissions, higher_is_better=higher),
        )
        for participant_id, subs in mine.items()
    }


def check_ids(body: Any, limit: int) -> list[int]:
    """The submission ids of a selection request: unique, at most `limit` of them."""
    ids = body.get("submissions") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in ids
    ):
        raise BadRequest(
            'send {"submissions": [id, ...]}: the ids of your final submissions '
            "([] goes back to your best public ones)"
        )
    if len(set(ids)) != len(ids):
        raise BadRequest("each final submission is named once; remove the repeated ids")
    if len(ids) > limit:
        raise BadRequest(f"select at most {limit} final submissions; you named {len(ids)}")
    return ids


def select_finals(
    session: Session,
    comp: Competition,
    participant: Participant,
    body: Any,
    now: datetime,
    *,
    members: Sequence[int],
) -> None:
    """Replace a participant's selection of final submissions (an empty one: the default);
    in a team, `members` holds every member, and the selection is the team's (any member
    may replace it; the last one stands)."""
    if status(comp, now) == "closed":
        raise Closed(
            f"competition {comp.id} closed at {iso(comp.closes_at)}; its final submissions "
            "can no longer change"
        )
    reason = comp.disqualified.get(str(participant.id))
    if reason is not None:
        raise Forbidden(f"you are disqualified from competition {comp.id}: {reason}")
    ids = check_ids(body, comp.final_submissions)
    mine = {c.id for c in candidates(session, comp.id, members)}
    foreign = [i for i in ids if i not in mine]
    if foreign:
        raise BadRequest(
            f"submission {foreign[0]} is not a scored or pending submission of yours (or your "
            f"team's) to "
            f"competition {comp.id}; list yours at /api/v1/competitions/{comp.id}/submissions"
        )
    session.execute(
        delete(Final).where(
            Final.competition_id == comp.id, Final.participant_id.in_(list(members))
        )
    )
    if ids:
        rows = [
            {"submission_id": i, "competition_id": comp.id, "participant_id": participant.id}
            for i in ids
        ]
        session.execute(insert(FINALS), rows)


def finals_view(session: Session, comp: Competition, members: Sequence[int]) -> dict[str, Any]:
    """A participant's (or their team's `members`') final submissions: selected, or by
    default their best public ones."""
    selected = selections(session, comp.id, members)
    mine = candidates(session, comp.id, members)
    higher = get_metric(comp.metric).higher_is_better
    finals = counted(mine, selected=selected, limit=comp.final_submissions, higher_is_better=higher)
    return {
        "competition_id": comp.id,
        "limit": comp.final_submissions,
        "selected": any(c.id in selected for c in mine),
        "submissions": [c.id for c in finals],
    }
