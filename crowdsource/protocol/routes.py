"""Every route of the API once: method, path, who may call it, what it takes and answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crowdsource.protocol import types as t
from crowdsource.protocol.schema import schema_of

ID = schema_of(t.Id)
BOARD = schema_of(t.BoardName)


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter."""

    name: str
    schema: dict[str, Any]
    where: str = "query"
    description: str = ""
    required: bool = False  # path parameters always are


@dataclass(frozen=True)
class Route:
    """One operation of the API."""

    method: str
    path: str
    summary: str
    who: str = "anyone"
    answer: Any = None  # a record type (its JSON answer), or None
    status: int = 200
    params: tuple[Param, ...] = ()
    body: Any = None  # a record type (a JSON body), or one of the BODY_* names
    frame: bool = False  # answers a frame: split-form JSON, or Parquet on request
    csv: bool = False  # also answers text/csv on request
    text: bool = False  # answers text/plain only
    extra: dict[int, Any] = field(default_factory=dict)  # other statuses' answers

    @property
    def auth(self) -> bool:
        """Whether the route needs a token."""
        return self.who != "anyone"


def path_ids(*names: str) -> tuple[Param, ...]:
    """Numeric path parameters."""
    return tuple(Param(n, ID, "path") for n in names)


CID, SID = path_ids("cid"), path_ids("sid")


def page(most: int, default: str) -> tuple[Param, ...]:
    """The paging parameters of a list: at most `most` items a page."""
    return (
        Param("limit", {"type": "integer", "minimum": 1, "maximum": most}, description=default),
        Param("offset", {"type": "integer", "minimum": 0}, description="items to skip"),
    )


BODY_HOSTING = "hosting"  # the spec as JSON, or a form of the spec and Parquet parts
BODY_FRAME_PREDICTIONS = "predictions"  # {"predictions": frame}, or raw Parquet
BODY_FRAME_ROWS = "rows"  # {"rows": frame}, or raw Parquet


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/api/v1/participants",
        "Register; the answer holds your token, once",
        answer=t.Registered,
        status=201,
        body=t.NameBody,
    ),
    Route("GET", "/api/v1/participants", "List participants", "token", t.ParticipantList),
    Route("GET", "/api/v1/participants/me", "Who your token belongs to", "token", t.Participant),
    Route(
        "POST",
        "/api/v1/participants/me/token",
        "A new token for you; the one sent stops working at once",
        "token",
        t.Registered,
    ),
    Route(
        "GET",
        "/api/v1/competitions",
        "List competitions, newest first (archived ones left out), a page at a time",
        answer=t.CompetitionList,
        params=(
            Param("type", schema_of(t.CompetitionType)),
            Param("status", {"type": "string", "enum": ["all", *t.COMPETITION_STATUSES]}),
            *page(1000, "competitions per page (default 100)"),
        ),
    ),
    Route(
        "POST",
        "/api/v1/competitions",
        "Host a competition from DataFrames",
        "token",
        t.Competition,
        201,
        body=BODY_HOSTING,
    ),
    Route("GET", "/api/v1/competitions/{cid}", "One competition", answer=t.Competition, params=CID),
    Route(
        "PATCH",
        "/api/v1/competitions/{cid}",
        "Edit title, description, close time or daily limit; a later close reopens",
        "host",
        t.Competition,
        params=CID,
        body=t.CompetitionEdit,
    ),
    Route(
        "DELETE",
        "/api/v1/competitions/{cid}",
        "Delete a competition with no submissions, else archive it",
        "host",
        t.Removed,
        params=CID,
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/dataset",
        "The dataset participants see",
        params=CID,
        frame=True,
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/answer",
        "The answer rows known so far",
        "host",
        params=CID,
        frame=True,
    ),
    Route(
        "POST",
        "/api/v1/competitions/{cid}/answer",
        "Add or replace answer rows by id; every affected submission is re-scored",
        "host",
        t.Resolved,
        params=CID,
        body=BODY_FRAME_ROWS,
    ),
    Route(
        "POST", "/api/v1/competitions/{cid}/close", "Close now", "host", t.Competition, params=CID
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/leaderboard",
        "A leaderboard, a page at a time (private: host, or anyone after close); "
        "`around=me` centres the page on your entry; CSV with Accept: text/csv",
        answer=t.LeaderboardPage,
        params=(
            *CID,
            Param("board", BOARD),
            *page(10_000, "entries per page (default: all; 21 with around=me)"),
            Param("around", {"type": "string", "enum": ["me"]}),
        ),
        csv=True,
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/ensemble",
        "The crowd's ensemble: the blend of the top k entries' final submissions, scored; "
        "without k, its score for every k",
        "host",
        t.Ensemble,
        params=(*CID, Param("k", {"type": "integer", "minimum": 1})),
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/submissions",
        "Your submissions to a competition (the host: every one)",
        "token",
        t.SubmissionList,
        params=CID,
    ),
    Route(
        "POST",
        "/api/v1/competitions/{cid}/submissions",
        "Submit predictions: 201 scored (or refused with 422); 202 pending with "
        "`wait=false`; 200 the first one again for a repeated Idempotency-Key",
        "token",
        t.Submission,
        201,
        params=(
            *CID,
            Param("wait", {"type": "boolean"}),
            Param("Idempotency-Key", {"type": "string", "maxLength": 200}, "header"),
        ),
        body=BODY_FRAME_PREDICTIONS,
        extra={200: t.Submission, 202: t.Submission},
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/final",
        "Your final submissions (selected, or your best public ones)",
        "token",
        t.Finals,
        params=CID,
    ),
    Route(
        "PUT",
        "/api/v1/competitions/{cid}/final",
        "Select your final submissions, until close",
        "token",
        t.Finals,
        params=CID,
        body=t.FinalSelection,
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/disqualified",
        "Disqualified participants and why",
        "host",
        t.DisqualifiedList,
        params=CID,
    ),
    Route(
        "POST",
        "/api/v1/competitions/{cid}/disqualified",
        "Disqualify a participant (id or name) with a reason",
        "host",
        t.Disqualification,
        201,
        params=CID,
        body=t.DisqualifyBody,
    ),
    Route(
        "DELETE",
        "/api/v1/competitions/{cid}/disqualified/{pid}",
        "Lift a disqualification",
        "host",
        t.DisqualifiedList,
        params=path_ids("cid", "pid"),
    ),
    Route(
        "POST",
        "/api/v1/competitions/{cid}/teams",
        "Make a team; you are its first member, and the answer holds its join code",
        "token",
        t.Team,
        201,
        params=CID,
        body=t.NameBody,
    ),
    Route(
        "POST",
        "/api/v1/competitions/{cid}/teams/join",
        "Join a team with the code a member shared (201; 200 if you are in it already)",
        "token",
        t.Team,
        201,
        params=CID,
        body=t.JoinBody,
        extra={200: t.Team},
    ),
    Route(
        "GET",
        "/api/v1/competitions/{cid}/teams/mine",
        "Your team in a competition, with its join code (404 if you are in none)",
        "token",
        t.Team,
        params=CID,
    ),
    Route(
        "GET", "/api/v1/submissions", "Your submissions, newest first", "token", t.SubmissionList
    ),
    Route(
        "GET",
        "/api/v1/submissions/{sid}",
        "One submission (its owner, or the competition's host)",
        "token",
        t.Submission,
        params=SID,
    ),
    Route(
        "GET",
        "/api/v1/submissions/{sid}/predictions",
        "Its predictions (its owner; the host after close)",
        "token",
        params=SID,
        frame=True,
    ),
    Route(
        "GET",
        "/api/v1/submissions/{sid}/provenance",
        "Where it came from: function, digest, versions (its owner; the host after close)",
        "token",
        t.SubmissionProvenance,
        params=SID,
    ),
    Route(
        "GET",
        "/api/v1/leaderboards",
        "Every competition's boards (public; private too once closed), a page at a time",
        answer=t.LeaderboardList,
        params=page(500, "competitions per page (default 50)"),
    ),
    Route(
        "GET",
        "/api/v1/standings",
        "Standings of functions and participants over every round of a competition type",
        answer=t.Standings,
        params=(
            Param("type", schema_of(t.CompetitionType), required=True),
            *page(10_000, "functions and participants per page (default: all)"),
        ),
    ),
    Route(
        "GET",
        "/api/v1/events",
        "The WebSocket event stream (upgrade); frames are the Event schema",
        params=(
            Param("competition", ID),
            Param("token", {"type": "string"}),
            Param(
                "submissions",
                {"type": "string", "enum": ["all", "mine"]},
                description="everyone's submission events (default), or only your own",
            ),
        ),
    ),
    Route("GET", "/api/v1/openapi.json", "This document"),
    Route("GET", "/healthz", "Liveness: the process answers (asks nothing else)", answer=t.Health),
    Route(
        "GET",
        "/readyz",
        "Readiness: database, schema, event bus and scoring up, not stopping",
        answer=t.Readiness,
        extra={503: t.Readiness},
    ),
    Route("GET", "/metrics", "Prometheus metrics of every process of this server", text=True),
)


def find(method: str, path: str) -> Route:
    """The route of a method and path template (KeyError if there is none)."""
    for route in ROUTES:
        if route.method == method and route.path == path:
            return route
    raise KeyError(f"{method} {path}")
