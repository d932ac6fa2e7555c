"""The crowdsource Python client: `Client('host:port')`, competitions, submissions, compete."""

from __future__ import annotations

import logging

from crowdsource.client.client import Client
from crowdsource.client.competitor import Competitor, RunResult
from crowdsource.client.errors import (
    BadRequest,
    BodyTooLarge,
    Closed,
    Conflict,
    ConnectionFailed,
    CrowdsourceError,
    Forbidden,
    IdentityExists,
    InvalidCompetition,
    InvalidSubmission,
    MethodNotAllowed,
    NotFound,
    NotOpen,
    QuotaExceeded,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
    UnexpectedResponse,
    UnknownIdentity,
    UnsupportedMediaType,
)
from crowdsource.client.events import EventStream
from crowdsource.client.models import Competition, Ensemble, Event, Submission, Team

__all__ = [
    "BadRequest",
    "BodyTooLarge",
    "Client",
    "Closed",
    "Competition",
    "Competitor",
    "Conflict",
    "ConnectionFailed",
    "CrowdsourceError",
    "Ensemble",
    "Event",
    "EventStream",
    "Forbidden",
    "IdentityExists",
    "InvalidCompetition",
    "InvalidSubmission",
    "MethodNotAllowed",
    "NotFound",
    "NotOpen",
    "QuotaExceeded",
    "RateLimited",
    "RunResult",
    "ServerError",
    "Submission",
    "Team",
    "Timeout",
    "Unauthorized",
    "UnexpectedResponse",
    "UnknownIdentity",
    "UnsupportedMediaType",
]

# A library logs, an application decides where: without this, Python's last-resort handler
# would print background warnings into whatever runs (a notebook cell, say).
logging.getLogger("crowdsource.client").addHandler(logging.NullHandler())
