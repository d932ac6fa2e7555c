"""Teams: make one in a competition, join one with its code, see your own."""

from __future__ import annotations

from typing import Any

from crowdsource.server.handlers.base import ID_ROUTE, APIHandler, path_id


def _field(body: Any, key: str) -> Any:
    """One field of a JSON object body (None if absent: the manager says what to send)."""
    return body.get(key) if isinstance(body, dict) else None


class TeamsHandler(APIHandler):
    """`/competitions/{id}/teams`: make a team."""

    async def post(self, cid: str) -> None:
        """Make a team; you are its first member, and the answer holds its join code."""
        name = _field(await self.json_body(), "name")
        self.send(await self.teams.create(path_id(cid, "competition"), self.participant, name), 201)


class JoinHandler(APIHandler):
    """`/competitions/{id}/teams/join`: join a team with its code."""

    async def post(self, cid: str) -> None:
        """Join; your submissions count for the team from now on."""
        code = _field(await self.json_body(), "code")
        data, new = await self.teams.join(path_id(cid, "competition"), self.participant, code)
        self.send(data, 201 if new else 200)


class MyTeamHandler(APIHandler):
    """`/competitions/{id}/teams/mine`: your team, with its code."""

    async def get(self, cid: str) -> None:
        """Your team in this competition."""
        self.send(await self.teams.mine(path_id(cid, "competition"), self.participant))


default_handlers = [
    (f"/api/v1/competitions/{ID_ROUTE}/teams", TeamsHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/teams/join", JoinHandler),
    (f"/api/v1/competitions/{ID_ROUTE}/teams/mine", MyTeamHandler),
]
