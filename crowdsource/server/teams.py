"""Teams: made in one competition, joined with a code the creator shares; a team has one
board entry and one daily quota, and a member's submissions, made before joining too, count
for it. The rules are written out in docs/teams.md."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from traitlets.config import LoggingConfigurable

from crowdsource.errors import BadRequest, Closed, Conflict, Forbidden, NotFound
from crowdsource.server import competitions, leaderboards
from crowdsource.server.competitions import CompetitionManager, status
from crowdsource.server.participants import clean_name
from crowdsource.server.storage import locks
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import (
    Competition,
    Final,
    Participant,
    Submission,
    Team,
    TeamMember,
)
from crowdsource.times import iso, next_midnight, utcnow

# Join codes: 24 characters drawn by `secrets` from 31 that are hard to misread (no 0/o,
# 1/l/i) and never start an option ("-"): about 119 random bits, so they cannot be guessed,
# only shared, and they survive being typed on a command line or read out.
CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CODE_LENGTH = 24


def new_code() -> str:
    """A fresh join code."""
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True)
class Entrant:
    """Who a participant competes as in one competition: alone, or as their team."""

    participant_id: int  # whose id keys the board entries: the team's captain, or themself
    members: tuple[int, ...]  # whose submissions share the daily quota
    team_id: int | None = None


def entrant(session: Session, competition_id: int, participant_id: int) -> Entrant:
    """A participant's entrant in a competition (one query when not in a team)."""
    row = session.execute(
        select(Team.id, Team.captain_id)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(
            TeamMember.competition_id == competition_id,
            TeamMember.participant_id == participant_id,
        )
    ).first()
    if row is None:
        return Entrant(participant_id, (participant_id,))
    members = session.scalars(select(TeamMember.participant_id).where(TeamMember.team_id == row.id))
    return Entrant(row.captain_id, tuple(members), row.id)


def used_today(
    session: Session, competition_id: int, members: tuple[int, ...], now: datetime
) -> int:
    """Submissions that `members` made to a competition since midnight UTC (failed ones
    do not count)."""
    since = next_midnight(now) - timedelta(days=1)
    used = session.scalar(
        select(func.count()).where(
            Submission.competition_id == competition_id,
            Submission.participant_id.in_(members),
            Submission.created_at >= since,
            Submission.state != "failed",
        )
    )
    return int(used or 0)


def team_of(session: Session, competition_id: int, participant_id: int) -> Team | None:
    """A participant's team in a competition, if any."""
    return session.scalar(
        select(Team)
        .join(TeamMember, TeamMember.team_id == Team.id)
        .where(
            TeamMember.competition_id == competition_id,
            TeamMember.participant_id == participant_id,
        )
    )


def check_teaming(comp: Competition, participant: Participant, now: datetime) -> None:
    """Refuse the host, a disqualified participant, and teams in a closed competition."""
    if comp.host_id == participant.id:
        raise Forbidden(
            f"hosts cannot be in a team of their own competition {comp.id}; register another "
            "name to compete"
        )
    reason = comp.disqualified.get(str(participant.id))
    if reason is not None:  # their team would be hidden with them
        raise Forbidden(f"you are disqualified from competition {comp.id}: {reason}")
    if status(comp, now) == "closed":
        raise Closed(
            f"competition {comp.id} closed at {iso(comp.closes_at)}; teams can no longer be "
            "made or joined"
        )


def _already(comp: Competition, team: Team) -> Conflict:
    """The refusal for a participant who is in a team already."""
    return Conflict(
        f"you are in team '{team.name}' of competition {comp.id} already; a participant is "
        "in one team per competition, and teams cannot be left"
    )


def create(
    session: Session, comp: Competition, participant: Participant, *, name: Any, now: datetime
) -> Team:
    """Make a team with its creator as its first member (and captain: the team's board entry
    is the creator's, so none moves)."""
    check_teaming(comp, participant, now)
    name = clean_name(name)
    locks.take(session, [locks.participant(participant.id)])
    mine = team_of(session, comp.id, participant.id)
    if mine is not None:
        raise _already(comp, mine)
    taken = Conflict(
        f"competition {comp.id} has a team named '{name}' already; choose another name, or "
        "ask that team for its join code"
    )
    if session.scalar(select(Team.id).where(Team.competition_id == comp.id, Team.name == name)):
        raise taken
    team = Team(
        competition_id=comp.id,
        name=name,
        captain_id=participant.id,
        code=new_code(),
        created_at=now,
    )
    session.add(team)
    try:
        session.flush()
        session.add(
            TeamMember(
                competition_id=comp.id,
                participant_id=participant.id,
                team_id=team.id,
                joined_at=now,
            )
        )
        session.flush()
    except IntegrityError as exc:  # made by another transaction since the checks
        raise taken from exc
    return team


def by_code(session: Session, comp: Competition, code: Any) -> Team:
    """The team of a competition that a join code opens."""
    if not isinstance(code, str) or not code.strip():
        raise BadRequest(
            '\'code\' must be the join code a team member shared, e.g. {"code": "k7m2..."}'
        )
    code = code.strip().lower()  # codes are lowercase; one read out may come back in capitals
    team = session.scalar(select(Team).where(Team.code == code)) if len(code) <= 64 else None
    if team is None or team.competition_id != comp.id or not hmac.compare_digest(team.code, code):
        raise NotFound(
            f"no team of competition {comp.id} has this join code; ask a member of the team "
            f"for it again (`crowdsource team show {comp.id}` shows it to them), or make your "
            "own team"
        )
    return team


def join(
    session: Session, comp: Competition, participant: Participant, *, code: Any, now: datetime
) -> tuple[Team, bool]:
    """Join the team a code opens; the joiner's submissions now count for it, and the boards
    are rebuilt. Returns the team and whether the participant is new to it."""
    check_teaming(comp, participant, now)
    team = by_code(session, comp, code)
    # the board exclusively (no submission writes meanwhile), the joiner, then the team
    locks.take(
        session,
        [locks.competition(comp.id), locks.participant(participant.id), locks.team(team.id)],
    )
    mine = team_of(session, comp.id, participant.id)
    if mine is not None and mine.id == team.id:
        return team, False
    if mine is not None:
        raise _already(comp, mine)
    members = entrant(session, comp.id, team.captain_id).members
    if len(members) >= comp.max_team_size:
        raise Conflict(
            f"team '{team.name}' has {len(members)} members, the most competition {comp.id} "
            f"allows (max_team_size); make your own team instead"
        )
    if comp.daily_limit is not None:
        used = used_today(session, comp.id, (*members, participant.id), now)
        if used > comp.daily_limit:
            raise Conflict(
                f"joining would give team '{team.name}' {used} submissions today, over the "
                f"daily limit of {comp.daily_limit} of competition {comp.id}; join after "
                f"{iso(next_midnight(now))}, when the count starts again"
            )
    session.add(
        TeamMember(
            competition_id=comp.id, participant_id=participant.id, team_id=team.id, joined_at=now
        )
    )
    # the team's selection of final submissions stands; the joiner's own one is dropped
    session.execute(
        delete(Final).where(Final.competition_id == comp.id, Final.participant_id == participant.id)
    )
    session.flush()
    leaderboards.rebuild(session, comp)
    return team, True


def as_json(session: Session, team: Team, comp: Competition) -> dict[str, Any]:
    """A team as its members see it: with the join code."""
    rows = session.execute(
        select(Participant.id, Participant.name, TeamMember.joined_at)
        .join(TeamMember, TeamMember.participant_id == Participant.id)
        .where(TeamMember.team_id == team.id)
        .order_by(TeamMember.joined_at, Participant.id)
    ).all()
    members = [{"id": i, "name": n, "joined_at": iso(at)} for i, n, at in rows]
    return {
        "id": team.id,
        "competition_id": team.competition_id,
        "name": team.name,
        "code": team.code,
        "captain": next(
            ({"id": m["id"], "name": m["name"]} for m in members if m["id"] == team.captain_id),
            None,
        ),
        "members": members,
        "max_team_size": comp.max_team_size,
        "created_at": iso(team.created_at),
    }


def mine(session: Session, comp: Competition, participant: Participant) -> Team:
    """A participant's team in a competition, or a NotFound that says how to have one."""
    team = team_of(session, comp.id, participant.id)
    if team is None:
        raise NotFound(
            f"you are in no team of competition {comp.id}; make one with "
            f"`crowdsource team create {comp.id} NAME`, or join one with the code a member "
            f"shares: `crowdsource team join {comp.id} CODE`"
        )
    return team


class TeamManager(LoggingConfigurable):
    """Making, joining and reading teams; a change of teams changes the boards."""

    def __init__(self, *, store: Store, competitions: CompetitionManager, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.competitions = competitions

    async def create(
        self, competition_id: int, participant: Participant, name: Any
    ) -> dict[str, Any]:
        """Make a team; the answer holds its join code."""

        def run(session: Session) -> dict[str, Any]:
            comp = competitions.get(session, competition_id)
            return as_json(
                session, create(session, comp, participant, name=name, now=utcnow()), comp
            )

        data = await self.store.tx(run)
        self.competitions.publish("leaderboard.changed", competition_id)  # named by the team now
        return data

    async def join(
        self, competition_id: int, participant: Participant, code: Any
    ) -> tuple[dict[str, Any], bool]:
        """Join a team by its code; returns the team and whether the caller is new to it."""

        def run(session: Session) -> tuple[dict[str, Any], bool]:
            comp = competitions.get(session, competition_id)
            team, new = join(session, comp, participant, code=code, now=utcnow())
            return as_json(session, team, comp), new

        data, new = await self.store.tx(run)
        if new:
            self.competitions.publish("leaderboard.changed", competition_id)
        return data, new

    async def mine(self, competition_id: int, participant: Participant) -> dict[str, Any]:
        """The caller's team in a competition, with its code."""

        def run(session: Session) -> dict[str, Any]:
            comp = competitions.get(session, competition_id)
            return as_json(session, mine(session, comp, participant), comp)

        return await self.store.tx(run)
