"""Participants: register, list, and who am I."""

from __future__ import annotations

from crowdsource.server import participants
from crowdsource.server.handlers.base import APIHandler


class ParticipantsHandler(APIHandler):
    """`/participants`: register (anyone) and list (with a token)."""

    async def post(self) -> None:
        """Register; the token is in this answer and never again."""
        body = await self.json_body()
        name = body.get("name") if isinstance(body, dict) else None
        self.send(await self.participants.register(name), 201)

    async def get(self) -> None:
        """List participants."""
        self.participant  # noqa: B018 - a token is required
        self.send({"participants": await self.participants.listing()})


class MeHandler(APIHandler):
    """`/participants/me`: the caller."""

    def get(self) -> None:
        """Who the token belongs to."""
        self.send(participants.as_json(self.participant))


class TokenHandler(APIHandler):
    """`/participants/me/token`: rotate the caller's token."""

    async def post(self) -> None:
        """A new token, in this answer only; the one sent stops working at once."""
        self.send(await self.participants.rotate_token(self.participant))


default_handlers = [
    (r"/api/v1/participants", ParticipantsHandler),
    (r"/api/v1/participants/me", MeHandler),
    (r"/api/v1/participants/me/token", TokenHandler),
]
