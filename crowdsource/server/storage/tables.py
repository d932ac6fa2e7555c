"""The database tables, as SQLAlchemy 2 declarative models."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from crowdsource.times import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, hands back aware UTC (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Convert to naive UTC for storage."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Mark stored values as UTC."""
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Participant(Base):
    """Someone who hosts or competes; known by a hashed API token."""

    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Team(Base):
    """Participants who compete in one competition as one: one board entry, one quota."""

    __tablename__ = "teams"
    __table_args__ = (
        UniqueConstraint("competition_id", "name"),
        UniqueConstraint("competition_id", "captain_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"))
    name: Mapped[str] = mapped_column(String(100))
    # whose participant id keys the team's board entries: the creator, who cannot leave
    captain_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TeamMember(Base):
    """A participant's team in one competition (at most one: the primary key)."""

    __tablename__ = "team_members"
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """A DataFrame stored as Parquet bytes."""

    __tablename__ = "blobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Competition(Base):
    """A question with a dataset to show and an answer to hide."""

    __tablename__ = "competitions"
    id: Mapped[int] = mapped_column(primary_key=True)
    host_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(20))
    metric: Mapped[str] = mapped_column(String(40))
    id_column: Mapped[str] = mapped_column(String(200))
    targets: Mapped[list[str]] = mapped_column(JSON)
    classes: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    daily_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_team_size: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    public_fraction: Mapped[float] = mapped_column(Float, default=1.0)
    split_salt: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int] = mapped_column(Integer)
    answer_rows: Mapped[int] = mapped_column(Integer, default=0)
    answer_version: Mapped[int] = mapped_column(Integer, default=0)
    dataset_blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"))
    answer_blob_id: Mapped[int | None] = mapped_column(ForeignKey("blobs.id"), nullable=True)
    closed_announced: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    final_submissions: Mapped[int] = mapped_column(Integer, default=2)
    archived: Mapped[bool] = mapped_column(default=False)
    # participant id (as text, JSON keys are) -> the reason they were disqualified
    disqualified: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=0)  # counts the host's edits
    public_scoring: Mapped[str] = mapped_column(String(16), default="plain")  # or "ladder"
    ladder_step: Mapped[float] = mapped_column(Float, default=0.01)


class Submission(Base):
    """One participant's predictions for one competition, and their current score."""

    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("participant_id", "idempotency_key"),
        Index("ix_submissions_quota", "competition_id", "participant_id", "created_at"),
        Index("ix_submissions_state", "state"),
        Index("ix_submissions_function", "participant_id", "function_name"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    public_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    private_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    predictions_blob_id: Mapped[int] = mapped_column(ForeignKey("blobs.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # where it came from (crowdsource/server/provenance.py): the function that made it, known
    # by its name and code digest, and the whole record as the client sent it
    function_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    function_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(
        JSON(none_as_null=True), nullable=True
    )


class Final(Base):
    """A submission its participant selected to count on the private board."""

    __tablename__ = "finals"
    __table_args__ = (Index("ix_finals_owner", "competition_id", "participant_id"),)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))


class Score(Base):
    """One scoring of a submission: the history kept as answers arrive."""

    __tablename__ = "scores"
    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    public_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    private_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    answer_rows: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Entry(Base):
    """A participant's standing on one board: kept current as scores are recorded."""

    __tablename__ = "entries"
    __table_args__ = (Index("ix_entries_rank", "competition_id", "board", "score"),)
    competition_id: Mapped[int] = mapped_column(ForeignKey("competitions.id"), primary_key=True)
    board: Mapped[str] = mapped_column(String(10), primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), primary_key=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    best_submission_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    submissions: Mapped[int] = mapped_column(Integer, default=0)
    last_submission_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


# The tables, for the hot path's Core statements.
BLOBS = cast(Table, Blob.__table__)
COMPETITIONS = cast(Table, Competition.__table__)
SUBMISSIONS = cast(Table, Submission.__table__)
SCORES = cast(Table, Score.__table__)
ENTRIES = cast(Table, Entry.__table__)
FINALS = cast(Table, Final.__table__)


class Setting(Base):
    """A fact about the whole deployment that every server checks (the secret's fingerprint)."""

    __tablename__ = "settings"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class WriteBucket(Base):
    """A participant's write-rate token bucket, shared by every server process: `tokens` left
    at `at` (seconds since the epoch); `granted` says whether the last write was allowed."""

    __tablename__ = "write_buckets"
    participant_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    at: Mapped[float] = mapped_column(Float)
    granted: Mapped[bool] = mapped_column(default=True)
