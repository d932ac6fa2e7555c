"""The crowd's ensemble: for the host, the blend of the top k board entries' final
submissions, scored like a submission, for every k, so the host sees whether the crowd beats
its best member (docs/ensemble.md).

Each entry (a participant or a team) brings one member: before close the final submission
with the best public score, after close the one the private board counts. Members are ranked
by the public board before close and by the private board after. Predictions are aligned by
id (as scoring aligns them), never by row order, then blended: mean probabilities, mean
values, or a majority vote of labels whose ties go to the label of the best-ranked member
among the tied ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session
from traitlets import Int
from traitlets.config import LoggingConfigurable

from crowdsource import frames, validation
from crowdsource.errors import BadRequest, Forbidden
from crowdsource.metrics import get_metric
from crowdsource.server import competitions, finals, leaderboards
from crowdsource.server.competitions import CompetitionManager
from crowdsource.server.scoring import score as scoring
from crowdsource.server.scoring import workers as jobs
from crowdsource.server.scoring.score import Spec
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import Competition, Participant, Submission
from crowdsource.times import utcnow


@dataclass(frozen=True)
class Member:
    """One board entry's submission in the ensemble."""

    rank: int | None
    name: str
    participant_id: int
    submission_id: int
    public_score: float | None
    private_score: float | None

    def view(self, *, closed: bool) -> dict[str, Any]:
        """The member as JSON (its private score only after close)."""
        return {
            "rank": self.rank,
            "name": self.name,
            "participant_id": self.participant_id,
            "submission_id": self.submission_id,
            "public_score": self.public_score,
            "private_score": self.private_score if closed else None,
        }


# ---------------------------------------------------------------- blending (pure)


def blend(needs: str, predictions: Sequence[np.ndarray]) -> np.ndarray:
    """The blend of encoded, id-aligned predictions, listed best-ranked first."""
    if needs == "labels":
        return vote(predictions)
    return np.mean(np.stack(predictions), axis=0)


def vote(labels: Sequence[np.ndarray]) -> np.ndarray:
    """Each row's most predicted class code; a tie goes to the label of the best-ranked
    member (the earliest in `labels`) among those that predicted a tied label."""
    stacked = np.stack(labels)  # members x rows
    classes = int(stacked.max()) + 1
    rows = np.arange(stacked.shape[1])
    counts = np.zeros((stacked.shape[1], classes), dtype=np.int64)
    for member in stacked:
        counts[rows, member] += 1
    tied = counts == counts.max(axis=1, keepdims=True)
    out = np.full(stacked.shape[1], -1, dtype=np.int64)
    for member in stacked:  # best-ranked first: the first tied label seen wins
        take = (out < 0) & tied[rows, member]
        out[take] = member[take]
    return out


def encoded(spec: Spec, expected: np.ndarray, data: bytes) -> np.ndarray:
    """Stored predictions, aligned by id to the sorted dataset ids and encoded."""
    cols = validation.read_columns(data, frames.PARQUET, spec.shape)
    return validation.validate(spec.shape, cols, expected)[2]


def curve(
    db_url: str, spec: Spec, predictions: Sequence[bytes], ks: Sequence[int]
) -> list[tuple[int, float | None, float | None]]:
    """(k, public, private) of the blend of the first k predictions, for each k: the job that
    runs off the event loop."""
    expected, truth = jobs.CACHE.get(db_url, spec)
    members = [encoded(spec, expected, data) for data in predictions]
    ids = expected.astype(str).astype(object) if expected.dtype == object else expected
    out = []
    for k in ks:
        public, private, _ = scoring.score_against(spec, truth, ids, blend(spec.needs, members[:k]))
        out.append((k, public, private))
    return out


# ---------------------------------------------------------------- choosing members


def member_submission(
    standing: finals.Standing, *, closed: bool, higher_is_better: bool
) -> finals.Candidate | None:
    """An entry's submission in the ensemble: the final one the private board counts after
    close, before close the final one with the best public score."""
    if closed:
        return finals.best_private(standing.finals, higher_is_better=higher_is_better)
    scored = [c for c in standing.finals if c.public_score is not None]
    if not scored:
        return None
    sign = -1.0 if higher_is_better else 1.0
    return min(scored, key=lambda c: (sign * (c.public_score or 0.0), c.id))


def members(session: Session, comp: Competition, *, closed: bool, limit: int) -> list[Member]:
    """The board's scored entries, in rank order, each with its member submission (at most
    `limit`)."""
    higher = get_metric(comp.metric).higher_is_better
    board = leaderboards.load_board(session, comp, name="private" if closed else "public")
    standing = finals.standings(session, comp, leaderboards.captains(session, comp.id))
    out: list[Member] = []
    for entry in board["entries"]:
        pid = entry["participant"]["id"]
        found = pid in standing and member_submission(
            standing[pid], closed=closed, higher_is_better=higher
        )
        if not found or entry["score"] is None:
            continue
        out.append(
            Member(
                entry["rank"],
                entry["name"],
                pid,
                found.id,
                found.public_score,
                found.private_score,
            )
        )
        if len(out) == limit:
            break
    return out


def check_k(text: str | None) -> int | None:
    """The `k` query argument: a positive whole number, or absent."""
    if text is None:
        return None
    try:
        k = int(text)
    except ValueError:
        k = 0
    if k < 1:
        raise BadRequest(f"'k' must be a whole number of entries, 1 or more; got {text!r}")
    return k


class EnsembleManager(LoggingConfigurable):
    """The crowd's ensemble, for hosts: computed on a scoring thread, cached per board state
    (the members' submissions and scores, the answer, and whether the competition closed)."""

    limit = Int(50, help="The most entries an ensemble curve blends (?k= may not exceed it).").tag(
        config=True
    )

    def __init__(
        self, *, store: Store, workers: Workers, competitions: CompetitionManager, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.workers = workers
        self.competitions = competitions
        self._cache: dict[int, tuple[Any, list[tuple[int, float | None, float | None]]]] = {}

    async def ensemble(
        self, competition_id: int, viewer: Participant, *, k: int | None
    ) -> dict[str, Any]:
        """The blend of the top `k` entries (without `k`, the curve for every k)."""

        def load(session: Session) -> tuple[Competition, bool, list[Member], Spec]:
            comp = competitions.get(session, competition_id)
            if comp.host_id != viewer.id:
                raise Forbidden(
                    f"the crowd's ensemble of competition {competition_id} is shown to its host "
                    "only"
                )
            if get_metric(comp.metric).needs == "clusters":
                raise BadRequest(
                    f"competition {competition_id} is scored by {comp.metric}: cluster labels "
                    "differ between submissions, so they cannot be blended"
                )
            closed = competitions.status(comp, utcnow()) == "closed"
            found = members(session, comp, closed=closed, limit=self.limit)
            return comp, closed, found, competitions.spec(comp)

        comp, closed, found, spec = await self.store.tx(load)
        if k is not None and k > len(found):
            raise BadRequest(
                f"k={k} but competition {competition_id} has {len(found)} scored entries "
                f"(at most {self.limit} are blended); ask for k from 1 to {len(found)}"
            )
        scores = await self._curve(competition_id, spec, found, closed)
        chosen = [s for s in scores if k is None or s[0] == k]
        higher = get_metric(comp.metric).higher_is_better
        return {
            "competition_id": competition_id,
            "metric": comp.metric,
            "higher_is_better": higher,
            "board": "private" if closed else "public",
            "closed": closed,
            "k": k,
            "members": [m.view(closed=closed) for m in found],
            "scores": [
                {"k": n, "public_score": pub, "private_score": priv if closed else None}
                for n, pub, priv in chosen
            ],
        }

    async def _curve(
        self, competition_id: int, spec: Spec, found: list[Member], closed: bool
    ) -> list[tuple[int, float | None, float | None]]:
        """Every k's scores, from the cache while the board state is unchanged."""
        state = (
            spec.answer_blob_id,
            closed,
            tuple((m.submission_id, m.public_score, m.private_score) for m in found),
        )
        cached = self._cache.get(competition_id)
        if cached is not None and cached[0] == state:
            return cached[1]
        ids = [m.submission_id for m in found]
        data = await self.store.tx(lambda s: predictions(s, ids))
        ks = list(range(1, len(found) + 1))
        scores = await self.workers.run(0, curve, self.store.url, spec, data, ks)
        self._cache[competition_id] = (state, scores)
        return scores


def predictions(session: Session, submission_ids: Sequence[int]) -> list[bytes]:
    """The stored predictions of these submissions, in the order given."""
    blob_ids = dict(
        session.execute(
            select(Submission.id, Submission.predictions_blob_id).where(
                Submission.id.in_(list(submission_ids))
            )
        ).all()
    )
    return [competitions.blob(session, blob_ids[i]) for i in submission_ids]
