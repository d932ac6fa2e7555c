"""The event stream `/api/v1/events`: event types, their payloads, and the frames on the wire.

Every frame the server sends is `{"type", "competition_id", "data", "at"}`; the one frame a
client sends is `{"type": "snapshot"}` (resync: answered with a fresh `leaderboard.snapshot`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from crowdsource.protocol.schema import NotRequired
from crowdsource.protocol.types import Competition, Entry, Id, Named, SubmissionState

HELLO = "hello"  # on connect, and when the server may have missed events: resync
SNAPSHOT = "leaderboard.snapshot"
DELTA = "leaderboard.delta"
YOU = "leaderboard.you"
CHANGED = "leaderboard.changed"
RESYNC_REQUEST = "snapshot"  # what a client sends to get a fresh snapshot
FELL_BEHIND = 4000  # close code: the listener's send queue filled up
STOPPING = 1001  # close code: the server is stopping


class Hello(TypedDict):
    """Nothing: resync by REST (or wait for the snapshot) after it."""


class CompetitionUpdated(Competition):
    """The competition after a host's edit, and whether the edit reopened it."""

    reopened: bool


class SubmissionOutcome(TypedDict):
    """A scoring's outcome; `reason` (a failure's, which may quote the predictions) is in it
    only on streams opened with its owner's token."""

    submission_id: Id
    participant: Named
    state: SubmissionState
    public_score: float | None
    reason: NotRequired[str | None]


class Resolution(TypedDict):
    """Answer rows arrived: how many there are, and how many submissions were re-scored."""

    answer_rows: int
    rescored: int


class Deletion(TypedDict):
    """A competition deleted, or archived (it had submissions)."""

    id: Id
    deleted: bool
    archived: bool


class BoardSnapshot(TypedDict):
    """The top `limit` entries of the public board in rank order, and its size."""

    board: Literal["public"]
    version: int
    total: int
    limit: int
    title: str
    metric: str
    higher_is_better: bool
    entries: list[Entry]


class BoardDelta(TypedDict):
    """What changed in the top window since `previous` (if that is not your version: resync).
    Drop `removed`, upsert `entries` by participant.id, sort (rank null last, rank, name),
    keep the first `limit`."""

    board: Literal["public"]
    version: int
    previous: int
    total: int
    entries: list[Entry]
    removed: list[Id]


class BoardYou(TypedDict):
    """The listener's own place (authenticated listeners of one competition)."""

    version: int
    participant_id: Id
    rank: int | None
    score: float | None
    total: int


class BoardChanged(TypedDict):
    """A board changed (to listeners of every competition, who get no board)."""

    version: int
    total: int


@dataclass(frozen=True)
class EventType:
    """One event type: its payload and when it is sent."""

    type: str
    data: Any  # the payload's record (a TypedDict class)
    meaning: str


EVENTS: tuple[EventType, ...] = (
    EventType(HELLO, Hello, "on connect, and again when the server may have missed events"),
    EventType("competition.created", Competition, "a competition was hosted"),
    EventType("competition.closed", Competition, "a competition closed"),
    EventType("competition.resolved", Resolution, "answer rows arrived; scores were redone"),
    EventType("competition.updated", CompetitionUpdated, "a host edited a competition"),
    EventType("competition.deleted", Deletion, "a competition was deleted or archived"),
    EventType("submission.scored", SubmissionOutcome, "a submission was scored"),
    EventType("submission.failed", SubmissionOutcome, "a submission could not be scored"),
    EventType(SNAPSHOT, BoardSnapshot, "after hello (with `competition=`), and on request"),
    EventType(DELTA, BoardDelta, "the top window changed (coalesced, per `--push-rate`)"),
    EventType(YOU, BoardYou, "your rank, score or the board's size changed (with a token)"),
    EventType(CHANGED, BoardChanged, "a board changed (listeners without `competition=`)"),
)
EVENT_TYPES: tuple[str, ...] = tuple(e.type for e in EVENTS)
PAYLOADS: dict[str, Any] = {e.type: e.data for e in EVENTS}


def record_name(event_type: str) -> str:
    """The schema name of one event type's frame: `submission.scored` -> SubmissionScoredEvent."""
    return "".join(part.title() for part in event_type.replace(".", "_").split("_")) + "Event"


def frame_schema(event: EventType) -> dict[str, Any]:
    """The schema of one event type's frame."""
    return {
        "type": "object",
        "description": event.meaning,
        "properties": {
            "type": {"type": "string", "const": event.type},
            "competition_id": {"type": "integer", "minimum": 0},
            "data": {"$ref": "#/components/schemas/" + event.data.__name__},
            "at": {"type": "string", "format": "date-time"},
        },
        "required": ["type", "competition_id", "data", "at"],
        "additionalProperties": False,
    }


def encode(event_type: str, competition_id: int, data: Any, at: str) -> str:
    """One frame as the server sends it (the same text to every listener)."""
    return json.dumps(
        {"type": event_type, "competition_id": competition_id, "data": data, "at": at}
    )


def decode(text: str | bytes) -> dict[str, Any]:
    """One frame as a client receives it; ValueError if it is not a frame."""
    frame = json.loads(text)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise ValueError("an event frame is a JSON object with a 'type'")
    if not isinstance(frame.get("data"), dict):
        frame["data"] = {}
    return frame


RESYNC_FRAME = json.dumps({"type": RESYNC_REQUEST})


class ClientFrame(TypedDict):
    """The one frame a client sends: ask for a fresh snapshot."""

    type: Literal["snapshot"]
