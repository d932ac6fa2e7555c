"""Standings: functions and participants ranked across the rounds of a competition type."""

from __future__ import annotations

from crowdsource.server.handlers.base import APIHandler
from crowdsource.server.handlers.leaderboards import page
from crowdsource.server.leaderboards import PAGE_MOST


class StandingsHandler(APIHandler):
    """`/standings?type=&limit=&offset=`: the standings of one competition type, for
    everyone."""

    async def get(self) -> None:
        """Rounds, and a page of functions (by code digest, with versions) and participants."""
        limit, offset = page(self, default=None, most=PAGE_MOST)
        kind = self.get_argument("type", "")
        self.send(await self.standings.standings(kind, limit=limit, offset=offset))


default_handlers = [(r"/api/v1/standings", StandingsHandler)]
