"""Standings: functions and participants ranked across the rounds of a competition type."""

from __future__ import annotations

from crowdsource.server.handlers.base import APIHandler


class StandingsHandler(APIHandler):
    """`/standings?type=`: the standings of one competition type, for everyone."""

    async def get(self) -> None:
        """Rounds, functions (by code digest, with versions) and participants."""
        self.send(await self.standings.standings(self.get_argument("type", "")))


default_handlers = [(r"/api/v1/standings", StandingsHandler)]
