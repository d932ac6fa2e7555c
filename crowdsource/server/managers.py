"""The composition root: one manager per resource over one store, bus and scoring pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from traitlets.config import Configurable

from crowdsource.server.competitions import CompetitionManager
from crowdsource.server.ensemble import EnsembleManager
from crowdsource.server.events import EventBus
from crowdsource.server.leaderboards import LeaderboardManager
from crowdsource.server.participants import ParticipantManager
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.standings import StandingsManager
from crowdsource.server.storage.store import Store
from crowdsource.server.submissions import SubmissionManager
from crowdsource.server.teams import TeamManager

MANAGER_CLASSES = [
    ParticipantManager,
    CompetitionManager,
    SubmissionManager,
    LeaderboardManager,
    TeamManager,
    EnsembleManager,
    StandingsManager,
]


@dataclass(frozen=True)
class Managers:
    """Everything a server process serves from; handlers find each manager in the settings."""

    store: Store
    bus: EventBus
    workers: Workers
    participants: ParticipantManager
    competitions: CompetitionManager
    submissions: SubmissionManager
    leaderboards: LeaderboardManager
    teams: TeamManager
    ensembles: EnsembleManager
    standings: StandingsManager

    @classmethod
    def build(
        cls,
        *,
        store: Store,
        bus: EventBus,
        workers: Workers,
        secret: bytes,
        parent: Configurable | None = None,
    ) -> Managers:
        """The managers, configured from `parent` (the server application) if given."""
        competitions = CompetitionManager(parent=parent, store=store, bus=bus, workers=workers)
        leaderboards = LeaderboardManager(
            parent=parent, store=store, bus=bus, competitions=competitions
        )
        return cls(
            store=store,
            bus=bus,
            workers=workers,
            participants=ParticipantManager(parent=parent, store=store, bus=bus, secret=secret),
            competitions=competitions,
            submissions=SubmissionManager(
                parent=parent, store=store, bus=bus, workers=workers, competitions=competitions
            ),
            leaderboards=leaderboards,
            teams=TeamManager(parent=parent, store=store, competitions=competitions),
            ensembles=EnsembleManager(
                parent=parent, store=store, workers=workers, competitions=competitions
            ),
            standings=StandingsManager(
                parent=parent, store=store, bus=bus, leaderboards=leaderboards
            ),
        )

    def settings(self) -> dict[str, Any]:
        """The Tornado application settings that handlers read."""
        return {
            "participant_manager": self.participants,
            "competition_manager": self.competitions,
            "submission_manager": self.submissions,
            "leaderboard_manager": self.leaderboards,
            "team_manager": self.teams,
            "ensemble_manager": self.ensembles,
            "standings_manager": self.standings,
            "inline_bytes": self.workers.inline_bytes,
        }

    async def recover(self, *, rescore: bool) -> None:
        """After a start: set the close timers and, with `rescore` (one process of several
        does it), score what was acknowledged but not scored."""
        if rescore:
            await self.submissions.recover()
        await self.competitions.recover()

    def close(self) -> None:
        """Stop every manager, then the bus, the scoring pool and the store."""
        for manager in (self.leaderboards, self.submissions, self.competitions):
            manager.close()
        self.bus.close()
        self.workers.close()
        self.store.close()
