"""Participants: registration, token authentication and rotation (tokens stored as keyed
hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from traitlets import Integer
from traitlets.config import LoggingConfigurable

from crowdsource.errors import BadRequest, Conflict, Unauthorized
from crowdsource.server.events import RESYNC, TOKEN_ROTATED, Event, EventBus
from crowdsource.server.storage.store import Store
from crowdsource.server.storage.tables import Participant
from crowdsource.times import iso

TOKEN_PREFIX = "cs_"  # never read as an option; lets secret scanners recognise a token


def new_token() -> str:
    """A fresh token: the prefix and 32 random bytes, URL-safe."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str, *, secret: bytes) -> str:
    """The stored form of a token: HMAC-SHA256 under the server's secret."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()


def clean_name(name: Any) -> str:
    """A display name, trimmed and checked."""
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('\'name\' must be a non-empty string, e.g. {"name": "alice"}')
    name = name.strip()
    if not name.isprintable():
        raise BadRequest("'name' must not hold control characters (such as NUL or newlines)")
    if len(name) > 100:
        raise BadRequest(f"'name' is {len(name)} characters long; use at most 100")
    return name


def register(session: Session, *, name: Any, secret: bytes) -> tuple[Participant, str]:
    """Create a participant; returns it with its token (never stored in clear)."""
    name = clean_name(name)
    taken = Conflict(f"the name '{name}' is taken; choose another")
    if session.scalar(select(Participant.id).where(Participant.name == name)) is not None:
        raise taken
    token = new_token()
    participant = Participant(name=name, token_hash=hash_token(token, secret=secret))
    session.add(participant)
    try:
        session.flush()
    except IntegrityError as exc:  # registered by another transaction since the check
        raise taken from exc
    return participant, token


def authenticate(session: Session, *, token: str, secret: bytes) -> Participant:
    """The participant a token belongs to."""
    digest = hash_token(token, secret=secret)
    found = session.scalar(select(Participant).where(Participant.token_hash == digest))
    if found is None or not hmac.compare_digest(found.token_hash, digest):
        raise Unauthorized("the token is not valid; register again or check CROWDSOURCE_TOKEN")
    return found


def rotate_token(session: Session, *, participant_id: int, secret: bytes) -> str:
    """Give a participant a new token (the old one no longer authenticates); return it."""
    participant = session.get_one(Participant, participant_id)
    token = new_token()
    participant.token_hash = hash_token(token, secret=secret)
    session.flush()
    return token


def listing(session: Session) -> list[Participant]:
    """Every participant, oldest first."""
    return list(session.scalars(select(Participant).order_by(Participant.id)))


def as_json(participant: Participant) -> dict[str, Any]:
    """The public view of a participant."""
    return {
        "id": participant.id,
        "name": participant.name,
        "created_at": iso(participant.created_at),
    }


class ParticipantManager(LoggingConfigurable):
    """Registration, authentication and token rotation; tokens seen are cached until a
    rotation in any process (announced on the bus) or a resync empties them."""

    token_cache_size = Integer(
        100_000, help="Tokens remembered after a first lookup (emptied when full)."
    ).tag(config=True)

    def __init__(self, *, store: Store, bus: EventBus, secret: bytes, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.store = store
        self.bus = bus
        self.secret = secret
        self._tokens: dict[str, Participant] = {}
        self._forgets = 0  # a lookup that began before a forget must not refill the cache
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        """A token rotated in any process: forget its participant's cached tokens (every
        token after a resync: the bus may have missed a rotation)."""
        if event.type == RESYNC:
            self._forgets += 1
            self._tokens.clear()
        elif event.type == TOKEN_ROTATED:
            self._forget(event.data.get("participant_id"))

    def _forget(self, participant_id: Any) -> None:
        """Drop the cached tokens of one participant."""
        self._forgets += 1
        for digest, participant in list(self._tokens.items()):
            if participant.id == participant_id:
                self._tokens.pop(digest, None)

    async def authenticate(self, token: str) -> Participant:
        """The participant a token belongs to."""
        digest = hash_token(token, secret=self.secret)
        found = self._tokens.get(digest)
        if found is None:
            forgets = self._forgets
            found = await self.store.tx(lambda s: authenticate(s, token=token, secret=self.secret))
            if forgets != self._forgets:
                return found  # a token was rotated meanwhile: this one may be the old one
            if len(self._tokens) >= self.token_cache_size:
                self._tokens.clear()
            self._tokens[digest] = found
        return found

    async def register(self, name: Any) -> dict[str, Any]:
        """Register a participant; the answer holds the token, once."""

        def run(session: Session) -> dict[str, Any]:
            participant, token = register(session, name=name, secret=self.secret)
            return {**as_json(participant), "token": token}

        return await self.store.tx(run)

    async def rotate_token(self, participant: Participant) -> dict[str, Any]:
        """A new token for `participant`; the old one fails at once here, and in every other
        process as soon as the bus brings them the news."""
        token = await self.store.tx(
            lambda s: rotate_token(s, participant_id=participant.id, secret=self.secret)
        )
        self._forget(participant.id)
        self.bus.publish(Event(TOKEN_ROTATED, 0, {"participant_id": participant.id}))
        return {**as_json(participant), "token": token}

    async def listing(self) -> list[dict[str, Any]]:
        """Every participant, oldest first."""
        return await self.store.tx(lambda s: [as_json(p) for p in listing(s)])
