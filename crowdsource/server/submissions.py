"""Submissions: the rules for accepting one, recording its score, and reading it back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, TextualSelect, bindparam, insert, select, text
from sqlalchemy.orm import Session
from traitlets.config import LoggingConfigurable

from crowdsource import frames
from crowdsource.errors import (
    BadRequest,
    Closed,
    Conflict,
    Forbidden,
    NotFound,
    NotOpen,
    QuotaExceeded,
)
from crowdsource.metrics import get_metric
from crowdsource.server import competitions, finals, leaderboards, provenance, teams
from crowdsource.server.competitions import CompetitionManager, status
from crowdsource.server.events import ENTRY, Event, EventBus
from crowdsource.server.monitoring import metrics
from crowdsource.server.scoring import workers as jobs
from crowdsource.server.scoring.score import Scored, Spec
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage import blobs
from crowdsource.server.storage import locks as advisory
from crowdsource.server.storage.engine import unavailable
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import (
    SCORES,
    SUBMISSIONS,
    Competition,
    Participant,
    Score,
    Submission,
    UTCDateTime,
)
from crowdsource.server.tasks import Background
from crowdsource.times import iso, next_midnight, utcnow

T = TypeVar("T")

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


def abandoned(gone: Callable[[], bool]) -> None:
    """Refuse to record a submission whose client closed the request (checked last thing
    before the insert: once recorded, it is scored exactly once whoever waits for it)."""
    if gone():
        raise BadRequest(
            "the request was closed before the submission was recorded: nothing was recorded "
            "and no quota was used; send it again (with the same Idempotency-Key)"
        )


def check_open(comp: Competition, participant: Participant, now: datetime) -> None:
    """Refuse the host, a disqualified participant, and submissions outside the
    competition's times."""
    if comp.host_id == participant.id:
        raise Forbidden("hosts cannot submit to their own competition; register another name")
    reason = comp.disqualified.get(str(participant.id))
    if reason is not None:
        raise Forbidden(f"you are disqualified from competition {comp.id}: {reason}")
    state = status(comp, now)
    if state == "upcoming":
        raise NotOpen(f"competition {comp.id} opens at {iso(comp.opens_at)}; submit after that")
    if state == "closed":
        raise Closed(
            f"competition {comp.id} closed at {iso(comp.closes_at)}; it takes no more submissions"
        )


def quota(session: Session, comp: Competition, who: teams.Entrant, now: datetime) -> Quota:
    """Submissions left today to a participant, or their whole team (None without a limit);
    failed ones do not count."""
    resets = next_midnight(now)
    if comp.daily_limit is None:
        return Quota(None, resets)
    used = teams.used_today(session, comp.id, who.members, now)
    return Quota(max(comp.daily_limit - used, 0), resets)


def check_quota(session: Session, comp: Competition, who: teams.Entrant, now: datetime) -> Quota:
    """Refuse a submission over the daily limit, saying when it resets; else what is left."""
    left = quota(session, comp, who, now)
    if left.remaining == 0:
        whose = "you" if who.team_id is None else "your team"
        raise QuotaExceeded(
            f"{whose} used all {comp.daily_limit} submissions for today in competition "
            f"{comp.id}; the limit resets at {iso(left.resets_at)}",
            resets_at=left.resets_at,
        )
    return left


def locks(competition_id: int, participant_id: int) -> list[advisory.Lock]:
    """What recording a submission holds: its participant's submissions (key and quota
    checks, then the insert), and its competition's board shared (a rebuild waits)."""
    return [advisory.competition(competition_id, shared=True), advisory.participant(participant_id)]


def lock(session: Session, comp: Competition, participant: Participant) -> None:
    """Take the locks of recording a submission (none on SQLite, where writes take turns)."""
    advisory.take(session, locks(comp.id, participant.id))


def by_key(
    session: Session, participant: Participant, key: str | None, *, competition_id: int
) -> Submission | None:
    """The submission an Idempotency-Key already made to this competition, if any; a key is
    the participant's own, for one competition: used for another, it is a Conflict."""
    if key is None:
        return None
    found = session.scalar(
        select(Submission).where(
            Submission.participant_id == participant.id, Submission.idempotency_key == key
        )
    )
    if found is not None and found.competition_id != competition_id:
        raise Conflict(
            f"this Idempotency-Key was used for a submission to competition "
            f"{found.competition_id}; use a new key for each submission"
        )
    return found


def record(
    session: Session,
    *,
    comp: Competition,
    participant: Participant,
    scored: Scored | None,
    predictions: bytes | int,
    key: str | None,
    now: datetime,
    origin: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
    """Store a submission (scored, awaiting, or pending when `scored` is None) with its
    leaderboard update and its provenance (`origin`, checked), in the caller's transaction.
    `predictions` are bytes to store, or the id of a blob the scoring worker stored. Returns
    its view, whether it is new, and its board entry's new state (for the live boards; None
    if no entry was written)."""
    lock(session, comp, participant)
    existing = by_key(session, participant, key, competition_id=comp.id)
    if existing is not None:
        return as_json(session, existing, comp, participant, now), False, None
    check_open(comp, participant, now)
    who = teams.entrant(session, comp.id, participant.id)
    if who.team_id is not None:  # members share one quota: check and write it in turn
        advisory.take(session, [advisory.team(who.team_id)])
    left = check_quota(session, comp, who, now)
    row: dict[str, Any] = {
        "competition_id": comp.id,
        "participant_id": participant.id,
        "state": "pending" if scored is None else scored.state,
        "reason": None,
        "public_score": None if scored is None else scored.public_score,
        "private_score": None if scored is None else scored.private_score,
        "predictions_blob_id": predictions if isinstance(predictions, int) else None,
        "idempotency_key": key,
        "created_at": now,
        "scored_at": None if scored is None else now,
        "function_name": None if origin is None else origin["function"]["name"],
        "function_digest": None if origin is None else origin["function"]["digest"],
        "provenance": origin,
    }
    data = None if isinstance(predictions, int) else predictions
    history = [] if scored is None else [_score_row(scored, now)]
    # PostgreSQL in one statement; but a disqualified captain's team has no entry to write,
    # and a Ladder board moves by its steps: the statement-by-statement path (whose
    # `leaderboards.apply` knows both) takes those
    at_once = session.get_bind().dialect.name == "postgresql" and comp.public_scoring != "ladder"
    at_once = at_once and str(who.participant_id) not in comp.disqualified
    insert = _insert_at_once if at_once else _insert
    row["id"], rank, entry = insert(session, comp, row, data, history, entrant=who.participant_id)
    if entry is not None and who.participant_id == participant.id:
        entry["name"] = participant.name  # a team's entry is named from the team
    remaining = None if left.remaining is None else left.remaining - 1
    found = view(
        row,
        comp,
        participant,
        now,
        rank=rank,
        left=Quota(remaining, left.resets_at),
        history=history,
        shown=laddered(session, comp, entrant=who.participant_id),
    )
    return found, True, entry


Inserted = tuple[int, int | None, dict[str, Any] | None]  # id, the entrant's rank and entry
Written = tuple[dict[str, Any], bool, bool, dict[str, Any] | None]  # view, new, stale, entry


def _insert(
    session: Session,
    comp: Competition,
    row: dict[str, Any],
    data: bytes | None,
    history: list[dict[str, Any]],
    *,
    entrant: int,
) -> Inserted:
    """Write a submission's rows a statement each: its predictions (unless stored already),
    itself, its score (`history`) and the public entry of its `entrant` (the participant, or
    their team's captain). Returns its id, the entrant's public rank and entry state."""
    if data is not None:
        row["predictions_blob_id"] = blobs.insert_blob(session, data)
    submission_id = session.connection().execute(INSERT_SUBMISSION, row).scalar_one()
    for scoring in history:
        session.connection().execute(INSERT_SCORE, {**scoring, "submission_id": submission_id})
    entry = leaderboards.apply(
        session,
        comp,
        participant_id=entrant,
        submission_id=submission_id,
        public=row["public_score"],
        private=row["private_score"],
        at=row["created_at"],
    )
    return submission_id, leaderboards.rank(session, comp, participant_id=entrant), entry


def _insert_at_once(
    session: Session,
    comp: Competition,
    row: dict[str, Any],
    data: bytes | None,
    history: list[dict[str, Any]],
    *,
    entrant: int,
) -> Inserted:
    """PostgreSQL: what `_insert` writes, in one statement (a round trip, not four)."""
    scoring = history[0] if history else {}
    params = {
        **row,
        "entrant_id": entrant,
        "data": data,
        "answer_rows": scoring.get("answer_rows"),
        "scored": bool(history),
    }
    higher = get_metric(comp.metric).higher_is_better
    found = session.connection().execute(RECORD[higher], params).one()
    entry = leaderboards.state(entrant, found.score, found.submissions, iso(found.at))
    return int(found.id), None if found.rank is None else int(found.rank), entry


def _record(wins: str) -> TextualSelect:
    """Predictions (unless stored already), submission, score and the entrant's public entry
    (the upsert of `leaderboards.apply`), then the public rank (that of `leaderboards.rank`). Data
    changes in WITH all run, whether the query reads them or not."""
    return (
        text(f"""
        WITH blob AS (
            INSERT INTO blobs (data)
            SELECT CAST(:data AS bytea) WHERE CAST(:data AS bytea) IS NOT NULL
            RETURNING id
        ), sub AS (
            INSERT INTO submissions (competition_id, participant_id, state, reason,
                public_score, private_score, predictions_blob_id, idempotency_key,
                created_at, scored_at, function_name, function_digest, provenance)
            SELECT CAST(:competition_id AS integer), CAST(:participant_id AS integer),
                CAST(:state AS varchar), NULL, CAST(:public_score AS double precision),
                CAST(:private_score AS double precision),
                coalesce((SELECT id FROM blob), CAST(:predictions_blob_id AS integer)),
                CAST(:idempotency_key AS varchar), CAST(:created_at AS timestamp),
                CAST(:scored_at AS timestamp), CAST(:function_name AS varchar),
                CAST(:function_digest AS varchar), CAST(:provenance AS json)
            RETURNING id
        ), score AS (
            INSERT INTO scores (submission_id, public_score, private_score, answer_rows, at)
            SELECT sub.id, CAST(:public_score AS double precision),
                CAST(:private_score AS double precision), CAST(:answer_rows AS integer),
                CAST(:created_at AS timestamp)
            FROM sub WHERE CAST(:scored AS boolean)
        ), entry AS (
            INSERT INTO entries (competition_id, board, participant_id, score,
                best_submission_id, submissions, last_submission_at)
            SELECT CAST(:competition_id AS integer), 'public', CAST(:entrant_id AS integer),
                CAST(:public_score AS double precision),
                CASE WHEN CAST(:public_score AS double precision) IS NULL THEN NULL
                     ELSE sub.id END,
                1, CAST(:created_at AS timestamp)
            FROM sub
            {leaderboards.on_conflict(wins)}
            RETURNING score, submissions, last_submission_at
        )
        SELECT sub.id AS id, CASE WHEN mine.score IS NOT NULL THEN (
            SELECT count(*) + 1 FROM entries e
            WHERE e.competition_id = CAST(:competition_id AS integer) AND e.board = 'public'
              AND e.participant_id <> CAST(:entrant_id AS integer)
              AND e.score {wins} mine.score) END AS rank,
            mine.score AS score, mine.submissions AS submissions, mine.last_submission_at AS at
        FROM sub LEFT JOIN entry mine ON true
    """)
        .bindparams(
            bindparam("created_at", type_=UTCDateTime()),
            bindparam("scored_at", type_=UTCDateTime()),
            bindparam("provenance", type_=JSON(none_as_null=True)),
        )
        .columns(at=UTCDateTime())
    )


RECORD = {True: _record(">"), False: _record("<")}  # by higher_is_better


ANY_ANSWER = -1  # `rescoring` for a failure, which holds whatever the answer is now


def rescoring(
    session: Session, competition_id: int, answer_blob_id: int | None
) -> Competition | None:
    """A competition about to have scores written, its boards locked and its row read after
    the lock; None if its answer is no longer `answer_blob_id`, the one the scores are
    against (so that they are scored again on the newest, never written over newer ones)."""
    advisory.take(session, [advisory.competition(competition_id)])
    comp = session.get(Competition, competition_id, populate_existing=True)
    if comp is None or answer_blob_id not in (comp.answer_blob_id, ANY_ANSWER):
        return None
    return comp


def _score_row(scored: Scored, now: datetime) -> dict[str, Any]:
    """One scoring of a submission, as its history shows it."""
    return {
        "public_score": scored.public_score,
        "private_score": scored.private_score,
        "answer_rows": scored.answer_rows,
        "at": now,
    }


def _score(session: Session, submission_id: int, scored: Scored, now: datetime) -> None:
    """Add one scoring to a submission's history."""
    row = {**_score_row(scored, now), "submission_id": submission_id}
    session.connection().execute(INSERT_SCORE, row)


def settle(
    session: Session,
    comp: Competition,
    sub: Submission,
    scored: Scored,
    *,
    now: datetime,
) -> dict[str, Any] | None:
    """Record a new score for a stored submission, keep the history, and update the boards
    (holding the competition's boards: a re-score settles many, then rebuilds them). Returns
    the board entry's new state (None if none was written)."""
    advisory.take(session, [advisory.competition(comp.id)])
    sub.state = scored.state
    sub.public_score, sub.private_score = scored.public_score, scored.private_score
    sub.scored_at = now
    sub.reason = None
    _score(session, sub.id, scored, now)
    return leaderboards.apply(
        session,
        comp,
        participant_id=teams.entrant(session, comp.id, sub.participant_id).participant_id,
        submission_id=sub.id,
        public=sub.public_score,
        private=sub.private_score,
        at=sub.created_at,
        count=False,
    )


def fail(session: Session, comp: Competition, sub: Submission, reason: str) -> None:
    """Mark a submission failed, with the reason its owner sees; it no longer counts against
    the limit, nor on the boards."""
    advisory.take(session, [advisory.competition(comp.id)])
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


def readable(
    comp: Competition, sub: Submission, viewer: Participant, *, what: str, now: datetime
) -> None:
    """Allow a submission's owner, and its competition's host once it closed, to read where
    it came from; refuse anyone else, saying who may."""
    if viewer.id == sub.participant_id:
        return
    if viewer.id != comp.host_id:
        raise Forbidden(
            f"the {what} of submission {sub.id} is shown to its owner, and to the host of "
            f"competition {comp.id} once it closes"
        )
    if status(comp, now) != "closed":
        when = f"at {iso(comp.closes_at)}" if comp.closes_at else "(it has no close time yet)"
        raise Forbidden(
            f"the {what} of submission {sub.id} is shown to the host once competition "
            f"{comp.id} closes {when}"
        )


def mine(
    session: Session, participant: Participant, competition_id: int | None = None
) -> list[Submission]:
    """A participant's submissions, newest first."""
    query = select(Submission).where(Submission.participant_id == participant.id)
    if competition_id is not None:
        query = query.where(Submission.competition_id == competition_id)
    return list(session.scalars(query.order_by(Submission.id.desc())))


def received(session: Session, comp: Competition, now: datetime) -> list[dict[str, Any]]:
    """Every submission to a competition, newest first, for its host: who, when, state and
    scores (the private one after close), and whether it counts as a final submission."""
    closed = status(comp, now) == "closed"
    captain = leaderboards.captains(session, comp.id)  # a team's finals are chosen together
    counted = {c.id for s in finals.standings(session, comp, captain).values() for c in s.finals}
    rows = session.execute(
        select(Submission, Participant.name)
        .join(Participant, Participant.id == Submission.participant_id)
        .where(Submission.competition_id == comp.id)
        .order_by(Submission.id.desc())
    ).all()
    return [
        {
            "id": sub.id,
            "competition_id": comp.id,
            "participant": {"id": sub.participant_id, "name": name},
            "state": sub.state,
            "reason": sub.reason,
            "public_score": sub.public_score,
            "private_score": sub.private_score if closed else None,
            "final": sub.id in counted,
            "disqualified": str(sub.participant_id) in comp.disqualified,
            "created_at": iso(sub.created_at),
            "scored_at": iso(sub.scored_at),
        }
        for sub, name in rows
    ]


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
    who = teams.entrant(session, comp.id, owner.id)
    return view(
        row,
        comp,
        owner,
        now,
        rank=leaderboards.rank(session, comp, participant_id=who.participant_id),
        left=quota(session, comp, who, now),
        history=history(session, sub),
        shown=laddered(session, comp, entrant=who.participant_id),
    )


def laddered(session: Session, comp: Competition, *, entrant: int) -> float | None:
    """The entrant's board score, which a Ladder competition shows its owner in place of the
    exact one (no query for a plain board: this is on every submission's path)."""
    if comp.public_scoring != "ladder":
        return None
    return leaderboards.shown(session, comp, participant_id=entrant)


def view(
    row: dict[str, Any],
    comp: Competition,
    owner: Participant,
    now: datetime,
    *,
    rank: int | None,
    left: Quota,
    history: list[dict[str, Any]],
    shown: float | None = None,
) -> dict[str, Any]:
    """What the API shows of a submission: the private score only once the competition closed.
    Under the Ladder its public score is the owner's board score, `shown` (the exact one would
    hand back, through the response, what the Ladder keeps from the probes it stops)."""
    closed = status(comp, now) == "closed"
    if comp.public_scoring == "ladder":
        scored = row["public_score"] is not None
        row = {**row, "public_score": shown if scored else None}
        history = [{**h, "public_score": shown if scored else None} for h in history]
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


class SubmissionManager(LoggingConfigurable):
    """Accepting, scoring, re-scoring and reading submissions; what was acknowledged and not
    yet scored is finished after a restart."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        workers: Workers,
        competitions: CompetitionManager,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.bus = bus
        self.workers = workers
        self.competitions = competitions
        self.tasks = Background()

    def _view(self, session: Session, sub: Submission) -> dict[str, Any]:
        """A submission's view."""
        comp = session.get_one(Competition, sub.competition_id)
        owner = session.get_one(Participant, sub.participant_id)
        return as_json(session, sub, comp, owner, utcnow())

    def _precheck(
        self, session: Session, competition_id: int, participant: Participant, key: str | None
    ) -> dict[str, Any] | None:
        """Before costly work: the submission a key already made, or the open and quota rules."""
        comp = competitions.get(session, competition_id)
        existing = by_key(session, participant, key, competition_id=comp.id)
        if existing is not None:
            return self._view(session, existing)
        check_open(comp, participant, utcnow())
        check_quota(session, comp, teams.entrant(session, comp.id, participant.id), utcnow())
        return None

    # ------------------------------------------------------------ accepting

    async def submit(
        self,
        competition_id: int,
        participant: Participant,
        body: frames.Body,
        content_type: str | None,
        *,
        key: str | None,
        wait: bool,
        gone: Callable[[], bool] = lambda: False,
    ) -> tuple[dict[str, Any], bool]:
        """Validate, score and record a submission. Returns its view and whether it is new.
        A large one is scored and stored by a scoring worker, from its spooled file. Once
        `gone()` (the client closed the request) it is not recorded: nobody was told it was,
        so it must neither count against the quota nor appear later."""
        key = check_key(key)
        origin = await self._provenance(body, content_type)
        spec = await self.competitions.spec(competition_id)
        held = locks(competition_id, participant.id)
        big = len(body) > self.workers.inline_bytes
        if big or not wait:
            existing = await self.store.tx(self._precheck, competition_id, participant, key)
            if existing is not None:
                return existing, False
        if not wait:
            return await self._submit_later(
                spec, participant, body, content_type, key, gone, origin
            )

        def write(session: Session, scored: Scored) -> Written:
            abandoned(gone)
            comp = self.competitions.current(session, competition_id)
            view, new, entry = record(
                session,
                comp=comp,
                participant=participant,
                scored=scored,
                predictions=scored.blob_id or scored.predictions or frames.as_bytes(body),
                key=key,
                now=utcnow(),
                origin=origin,
            )
            return view, new, comp.answer_blob_id != spec.answer_blob_id, entry

        url = self.store.url
        if big:
            abandoned(gone)  # before the costly part, too
            shipped = body if self.workers.shares_files else frames.as_bytes(body)
            scored = await self._run(
                len(body), jobs.score_and_store, url, spec, shipped, content_type
            )
            new = False
            try:
                data, new, stale, entry = await self.store.write(lambda: scored, write, locks=held)
            finally:
                if not new and scored.blob_id is not None:  # refused, or made before: unstore
                    await self.store.tx(blobs.delete_blob, scored.blob_id)
        else:
            data, new, stale, entry = await self.store.write(
                lambda: self._timed(jobs.score_body, url, spec, body, content_type),
                write,
                locks=held,
            )
        if new:
            self._announce(data, entry)
        if stale:  # scored against an answer replaced meanwhile: all again, on the newest
            self.competitions.forget_spec(competition_id)
            self.tasks.spawn(self.rescore(competition_id))
        return data, new

    async def _provenance(
        self, body: frames.Body, content_type: str | None
    ) -> dict[str, Any] | None:
        """The provenance a body carries, checked before any scoring (read on a thread, and
        only if the body mentions it: most do not)."""
        if not provenance.mentioned(body, content_type):
            return None
        return await self.store.in_thread(provenance.extract, body, content_type)

    async def _submit_later(
        self,
        spec: Spec,
        participant: Participant,
        body: frames.Body,
        content_type: str | None,
        key: str | None,
        gone: Callable[[], bool],
        origin: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], bool]:
        """Store a submission as pending (acknowledged, durable) and score it afterwards."""

        def encode() -> bytes:
            """The predictions as Parquet, as they are stored."""
            frame = frames.decode_body(body, content_type, key="predictions")
            return frames.to_parquet(frame)

        data = await self.store.in_thread(encode)

        def write(session: Session) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
            abandoned(gone)
            return record(
                session,
                comp=competitions.get(session, spec.competition_id),
                participant=participant,
                scored=None,
                predictions=data,
                key=key,
                now=utcnow(),
                origin=origin,
            )

        view, new, entry = await self.store.tx(write)
        if new:
            self._publish_entry(view["competition_id"], entry)
            self.tasks.spawn(self.finish_despite_outages(view["id"]))
        return view, new

    async def finish_despite_outages(self, submission_id: int) -> None:
        """Finish an acknowledged submission, trying again while the database is away (it
        would otherwise stay pending until the next start)."""
        delay = 0.5
        while True:
            try:
                return await self.finish(submission_id)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self.log.warning("submission %s waits for the database: %s", submission_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def finish(self, submission_id: int) -> None:
        """Score a pending submission; record the score or the reason it failed."""

        def load(session: Session) -> tuple[Spec, bytes]:
            sub = get(session, submission_id)
            comp = competitions.get(session, sub.competition_id)
            return competitions.spec(comp), competitions.blob(session, sub.predictions_blob_id)

        spec: Spec | None = None
        try:  # any fault fails this submission alone, with a reason; none stops a start
            found, data = await self.store.tx(load)
            spec = found
            scored: Scored | None = await self._run(
                len(data), jobs.rescore, self.store.url, found, data
            )
            reason = None
        except Exception as exc:
            if unavailable(exc):  # the database is away: it stays pending, finished later
                raise
            scored, reason = None, jobs.failure(exc)

        def write(session: Session) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
            sub = get(session, submission_id)
            against = spec.answer_blob_id if spec is not None else ANY_ANSWER
            comp = rescoring(session, sub.competition_id, against)
            if comp is None:
                return None  # the answer changed while it was scored
            entry = None
            if scored is None:
                fail(session, comp, sub, reason or "could not be scored")
            else:
                entry = settle(session, comp, sub, scored, now=utcnow())
            return self._view(session, sub), entry

        written = await self.store.tx(write)
        if written is None:
            return await self.finish(submission_id)
        self._announce(*written)

    async def _run(self, size: int, fn: Callable[..., T], *args: Any) -> T:
        """Run a scoring job on the workers, counted as pending and timed (the metrics)."""
        with metrics().scoring():
            return await self.workers.run(size, fn, *args)

    def _timed(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a scoring job here, timed."""
        with metrics().scoring():
            return fn(*args)

    def _announce(self, view: dict[str, Any], entry: dict[str, Any] | None) -> None:
        """Publish the outcome of a scoring, and the board entry it moved (a failure
        rebuilt the board: it is read again)."""
        kind = "submission.failed" if view["state"] == "failed" else "submission.scored"
        metrics().submissions.labels("failed" if kind == "submission.failed" else "scored").inc()
        data = {
            "submission_id": view["id"],
            "participant": view["participant"],
            "state": view["state"],
            "public_score": view["public_score"],
            "reason": view["reason"],
        }
        self.bus.publish(Event(kind, view["competition_id"], data))
        if kind == "submission.scored":
            self._publish_entry(view["competition_id"], entry)
        else:
            self.bus.publish(Event("leaderboard.changed", view["competition_id"], {}))

    def _publish_entry(self, competition_id: int, entry: dict[str, Any] | None) -> None:
        """Send a board entry's new state to every process's live boards."""
        if entry is not None:
            self.bus.publish(Event(ENTRY, competition_id, entry))

    # ------------------------------------------------------------ re-scoring

    async def resolve(
        self, competition_id: int, viewer: Participant, body: frames.Body, content_type: str | None
    ) -> dict[str, Any]:
        """Add answer rows (host only) and re-score every submission against them."""
        count, spec = await self.competitions.add_rows(competition_id, viewer, body, content_type)
        rescored = await self.rescore(competition_id, spec)
        if not rescored:
            await self.competitions.preload(competition_id, rows=count)
        self.competitions.publish(
            "competition.resolved", competition_id, answer_rows=count, rescored=rescored
        )
        return {"answer_rows": count, "rescored": rescored}

    async def rescore(self, competition_id: int, spec: Spec | None = None) -> int:
        """Score every live submission of a competition again (on its newest answer unless
        `spec` says which); rebuild its boards."""
        if spec is None:
            spec = await self.competitions.spec(competition_id)
        against = spec.answer_blob_id
        found = await self.store.tx(
            lambda s: [
                (sub.id, competitions.blob(s, sub.predictions_blob_id))
                for sub in s.scalars(
                    select(Submission).where(
                        Submission.competition_id == competition_id, Submission.state != "failed"
                    )
                )
            ]
        )
        results: list[tuple[int, Scored | str]] = []
        for submission_id, data in found:
            try:
                outcome: Scored | str = await self._run(
                    len(data), jobs.rescore, self.store.url, spec, data
                )
            except Exception as exc:  # this submission fails; the others are still scored
                if unavailable(exc):
                    raise
                outcome = jobs.failure(exc)
            results.append((submission_id, outcome))

        def write(session: Session) -> None:
            comp = rescoring(session, competition_id, against)
            if comp is None:
                return  # a newer answer came meanwhile: its own re-score writes
            now = utcnow()
            for submission_id, outcome in results:
                sub = session.get_one(Submission, submission_id)
                if isinstance(outcome, str):
                    fail(session, comp, sub, outcome)
                else:
                    settle(session, comp, sub, outcome, now=now)
            leaderboards.rebuild(session, comp)

        await self.store.tx(write)
        self.competitions.publish("leaderboard.changed", competition_id)
        return len(results)

    async def recover(self) -> None:
        """After a start: score what was acknowledged but not scored."""
        for submission_id in await self.store.tx(lambda s: [sub.id for sub in pending(s)]):
            try:
                await self.finish(submission_id)
            except Exception:  # recording the outcome failed: it stays pending; go on
                self.log.exception("could not finish pending submission %s", submission_id)

    # ------------------------------------------------------------ reading

    async def get(self, submission_id: int, viewer: Participant) -> dict[str, Any]:
        """One submission, for its owner or the host."""

        def run(session: Session) -> dict[str, Any]:
            sub = get(session, submission_id)
            visible(session, sub, viewer)
            return self._view(session, sub)

        return await self.store.tx(run)

    async def predictions(self, submission_id: int, viewer: Participant) -> bytes:
        """A submission's predictions, for its owner, or for the host once closed."""

        def run(session: Session) -> bytes:
            sub = get(session, submission_id)
            if sub.participant_id != viewer.id:
                comp = visible(session, sub, viewer)
                if status(comp, utcnow()) != "closed":
                    raise Forbidden(
                        f"the predictions of submission {submission_id} are shown to the host "
                        f"once competition {comp.id} closes"
                    )
            return competitions.blob(session, sub.predictions_blob_id)

        return await self.store.tx(run)

    async def provenance(self, submission_id: int, viewer: Participant) -> dict[str, Any]:
        """Where a submission came from: for its owner, and for the host once closed."""

        def run(session: Session) -> dict[str, Any]:
            sub = get(session, submission_id)
            comp = session.get_one(Competition, sub.competition_id)
            readable(comp, sub, viewer, what="provenance", now=utcnow())
            owner = session.get_one(Participant, sub.participant_id)
            return {
                "submission_id": sub.id,
                "competition_id": comp.id,
                "participant": {"id": owner.id, "name": owner.name},
                "created_at": iso(sub.created_at),
                "provenance": sub.provenance,
            }

        return await self.store.tx(run)

    async def mine(
        self, viewer: Participant, competition_id: int | None = None
    ) -> list[dict[str, Any]]:
        """A participant's own submissions, newest first."""

        def run(session: Session) -> list[dict[str, Any]]:
            if competition_id is not None:
                competitions.get(session, competition_id)
            return [self._view(session, s) for s in mine(session, viewer, competition_id)]

        return await self.store.tx(run)

    async def of_competition(
        self, viewer: Participant, competition_id: int
    ) -> list[dict[str, Any]]:
        """Submissions to a competition: every one for its host, else the viewer's own."""

        def run(session: Session) -> list[dict[str, Any]] | None:
            comp = competitions.get(session, competition_id)
            return received(session, comp, utcnow()) if comp.host_id == viewer.id else None

        found = await self.store.tx(run)
        return await self.mine(viewer, competition_id) if found is None else found

    # ------------------------------------------------------------ final submissions

    async def finals(self, competition_id: int, viewer: Participant) -> dict[str, Any]:
        """The viewer's final submissions to a competition."""
        return await self.store.tx(
            lambda s: finals.finals_view(
                s,
                competitions.get(s, competition_id),
                teams.entrant(s, competition_id, viewer.id).members,
            )
        )

    async def select_finals(
        self, competition_id: int, viewer: Participant, body: Any
    ) -> dict[str, Any]:
        """Select the viewer's final submissions (until the competition closes)."""

        def run(session: Session) -> dict[str, Any]:
            comp = competitions.get(session, competition_id)
            members = teams.entrant(session, comp.id, viewer.id).members
            finals.select_finals(session, comp, viewer, body, utcnow(), members=members)
            return finals.finals_view(session, comp, members)

        return await self.store.tx(run)

    def close(self) -> None:
        """Cancel background scoring (what was acknowledged is finished after a restart)."""
        self.tasks.cancel()
