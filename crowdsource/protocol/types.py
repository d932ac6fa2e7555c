"""The API's shapes, once: what the server sends and takes, as typed records (TypedDicts).

Server views return these, the client builds its models on them, and the OpenAPI document,
the TypeScript types and docs/api.md's tables are generated from them."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from crowdsource.protocol.schema import OPEN, NotRequired, keywords

MAX_ID = 2**31 - 1  # ids are the databases' INTEGER (PostgreSQL int4); larger cannot exist
Id = Annotated[int, keywords(minimum=1, maximum=MAX_ID)]
Time = Annotated[str, keywords(format="date-time")]  # ISO 8601, UTC

CompetitionType = Literal["classify", "regress", "predict", "cluster"]
CompetitionStatus = Literal["upcoming", "open", "closed"]
SubmissionState = Literal["pending", "scored", "failed", "awaiting_answer"]
BoardName = Literal["public", "private"]
PublicScoring = Literal["plain", "ladder"]
COMPETITION_TYPES: tuple[str, ...] = CompetitionType.__args__  # type: ignore[attr-defined]
COMPETITION_STATUSES: tuple[str, ...] = CompetitionStatus.__args__  # type: ignore[attr-defined]
SUBMISSION_STATES: tuple[str, ...] = SubmissionState.__args__  # type: ignore[attr-defined]
BOARDS: tuple[str, ...] = BoardName.__args__  # type: ignore[attr-defined]


# ---------------------------------------------------------------- people


class Named(TypedDict):
    """A participant as others see them: id and display name (plain text, never markup)."""

    id: Id
    name: str


class Participant(TypedDict):
    """A participant's public view."""

    id: Id
    name: str
    created_at: Time


class Registered(TypedDict):
    """A participant with their API token: shown once, at registration or rotation."""

    id: Id
    name: str
    created_at: Time
    token: str


class ParticipantList(TypedDict):
    """Every participant, oldest first."""

    participants: list[Participant]


class TeamMember(TypedDict):
    """A member of a team, as its members see it."""

    id: Id
    name: str
    joined_at: Time


class Team(TypedDict):
    """A team as its members see it, with the join code to share."""

    id: Id
    competition_id: Id
    name: str
    code: str
    captain: Named | None
    members: list[TeamMember]
    max_team_size: int
    created_at: Time


class BoardTeam(TypedDict):
    """A team on a board (no join code)."""

    id: Id
    name: str
    members: list[Named]


# ---------------------------------------------------------------- competitions


class Competition(TypedDict):
    """A competition's public view (never its answer)."""

    id: Id
    title: str
    description: str
    type: CompetitionType
    metric: str
    higher_is_better: bool
    id_column: str
    targets: list[str]
    classes: list[Any] | None
    prediction_columns: list[str]
    host: Named
    opens_at: Time | None
    closes_at: Time | None
    daily_limit: int | None
    max_team_size: int
    public_fraction: float
    status: CompetitionStatus
    rows: int | None
    answer_rows: int | None
    final_submissions: int
    public_scoring: PublicScoring
    ladder_step: float | None
    archived: bool
    created_at: Time


class CompetitionList(TypedDict):
    """One page of competitions, newest first."""

    competitions: list[Competition]
    total: int
    limit: int
    offset: int


class Frame(TypedDict):
    """A DataFrame in split form: what the server answers (and takes, among AnyFrame's)."""

    columns: list[str]
    data: list[list[Any]]


class ParquetFrame(TypedDict):
    """A DataFrame as base64-encoded Parquet."""

    format: Literal["parquet"]
    data: str


AnyFrame = Frame | list[dict[str, Any]] | ParquetFrame  # split form, records, or Parquet


class CompetitionSpec(TypedDict):
    """What hosting takes (JSON body; frames may also travel as Parquet parts of a form)."""

    title: str
    type: CompetitionType
    targets: list[str]
    dataset: AnyFrame
    description: NotRequired[str]
    metric: NotRequired[str]
    id_column: NotRequired[str]
    answer: NotRequired[AnyFrame | None]
    opens_at: NotRequired[Time | None]
    closes_at: NotRequired[Time | None]
    daily_limit: NotRequired[Annotated[int, keywords(minimum=1)] | None]
    max_team_size: NotRequired[Annotated[int, keywords(minimum=1, maximum=1000)]]
    public_fraction: NotRequired[Annotated[float, keywords(exclusiveMinimum=0, maximum=1)]]
    final_submissions: NotRequired[Annotated[int, keywords(minimum=1, maximum=100)]]
    public_scoring: NotRequired[PublicScoring]
    ladder_step: NotRequired[Annotated[float, keywords(exclusiveMinimum=0)]]


class CompetitionEdit(TypedDict):
    """What a host may edit; a later close time reopens a closed competition."""

    title: NotRequired[str]
    description: NotRequired[str]
    closes_at: NotRequired[Time | None]
    daily_limit: NotRequired[Annotated[int, keywords(minimum=1)] | None]


class Removed(TypedDict):
    """A deleted competition, or an archived one (it had submissions)."""

    id: Id
    deleted: bool
    archived: bool


class Resolved(TypedDict):
    """Answer rows stored, and how many submissions were re-scored."""

    answer_rows: int
    rescored: int


class Disqualification(TypedDict):
    """A disqualified participant and the host's reason."""

    participant: Named
    reason: str


class DisqualifyBody(TypedDict):
    """Who to disqualify (id or name) and why."""

    participant: Id | str
    reason: str


class DisqualifiedList(TypedDict):
    """Who is disqualified from a competition, and why."""

    disqualified: list[Disqualification]


class NameBody(TypedDict):
    """A name (a participant's, or a team's)."""

    name: str


class JoinBody(TypedDict):
    """The join code a team member shared."""

    code: str


# ---------------------------------------------------------------- submissions


class Scoring(TypedDict):
    """One scoring of a submission (answers that arrive later re-score it)."""

    public_score: float | None
    private_score: float | None
    answer_rows: int | None
    at: Time


class Submission(TypedDict):
    """A submission as its owner sees it: state, scores (private after close), rank, quota."""

    id: Id
    competition_id: Id
    participant: Named
    state: SubmissionState
    reason: str | None
    public_score: float | None
    private_score: float | None
    rank: int | None
    created_at: Time
    scored_at: Time | None
    remaining_today: int | None
    quota_resets_at: Time | None
    history: list[Scoring]


class ReceivedSubmission(TypedDict):
    """A submission in its competition host's list of every one."""

    id: Id
    competition_id: Id
    participant: Named
    state: SubmissionState
    reason: str | None
    public_score: float | None
    private_score: float | None
    final: bool
    disqualified: bool
    created_at: Time
    scored_at: Time | None


class SubmissionList(TypedDict):
    """Submissions, newest first (a host's list of a competition holds every one)."""

    submissions: list[Submission | ReceivedSubmission]


class Finals(TypedDict):
    """The submissions the private board counts for you: selected, or your best public ones."""

    competition_id: Id
    limit: int
    selected: bool
    submissions: list[Id]


class FinalSelection(TypedDict):
    """Your final submissions (`[]`: back to your best public ones)."""

    submissions: list[Id]


class ProvenanceFunction(TypedDict):
    """The function that made a submission: its name, code digest (sha256 hex, as the Python
    client computes it) and its source, only if the participant opted in."""

    name: str
    digest: Annotated[str, keywords(pattern="^[0-9a-f]{8,64}$")]
    source: str | None


class Provenance(TypedDict):
    """Where a submission came from (at most 256 KiB as JSON)."""

    function: ProvenanceFunction
    client_version: str | None
    python: str | None
    packages: dict[str, str]


class SubmissionProvenance(TypedDict):
    """A submission's provenance (null if it came with none), for its owner, and for the
    competition's host after close."""

    submission_id: Id
    competition_id: Id
    participant: Named
    created_at: Time
    provenance: Provenance | None


# ---------------------------------------------------------------- leaderboards


class Entry(TypedDict):
    """One board entry, keyed by `participant.id` (a team's by its captain's). Ties share a
    rank; entries with no score have rank null and come last."""

    rank: int | None
    name: str
    participant: Named
    team: BoardTeam | None
    score: float | None
    submissions: int
    last_submission_at: Time | None


class Leaderboard(TypedDict):
    """A board: its entries in rank order."""

    competition_id: Id
    title: str
    board: BoardName
    metric: str
    higher_is_better: bool
    entries: list[Entry]


class LeaderboardPage(Leaderboard):
    """A board's page: `limit` entries from `offset` (all of them when `limit` is null); with
    `around=me`, the entries around the caller's, and `me` (null if the caller has none)."""

    total: int
    limit: int | None
    offset: int
    me: NotRequired[Entry | None]


class LeaderboardList(TypedDict):
    """One page of every competition's boards (public; private too once closed)."""

    leaderboards: list[Leaderboard]
    total: int
    limit: int
    offset: int


class EnsembleMember(TypedDict):
    """One entry's submission in the crowd's ensemble."""

    rank: int | None
    name: str
    participant_id: Id
    submission_id: Id
    public_score: float | None
    private_score: float | None


class EnsembleScore(TypedDict):
    """The blend of the top k members, scored."""

    k: int
    public_score: float | None
    private_score: float | None


class Ensemble(TypedDict):
    """The crowd's ensemble of a competition (its host only)."""

    competition_id: Id
    metric: str
    higher_is_better: bool
    board: BoardName
    closed: bool
    k: int | None
    members: list[EnsembleMember]
    scores: list[EnsembleScore]


# ---------------------------------------------------------------- standings


class RoundRank(TypedDict):
    """A place in one round: normalised = (rank-1)/(of-1), 0 best (0 when of == 1)."""

    competition_id: Id
    rank: int
    of: int
    normalised: float


class FunctionVersion(TypedDict):
    """A registered function by code digest; `previous` is its prior version's digest."""

    name: str
    digest: str
    version: int
    previous: str | None


class FunctionStanding(TypedDict):
    """A function's record over a type's closed rounds."""

    participant: Named
    function: FunctionVersion
    rounds: int
    mean_normalised_rank: float
    wins: int
    ranks: list[RoundRank]


class ParticipantStanding(TypedDict):
    """A participant's record over a type's closed rounds."""

    participant: Named
    rounds: int
    mean_normalised_rank: float
    wins: int
    ranks: list[RoundRank]


class Round(TypedDict):
    """One round (competition) of a type, and the number of entries on its board."""

    competition_id: Id
    title: str
    closes_at: Time | None
    entries: int


class Standings(TypedDict):
    """Standings over every round of a competition type, best mean normalised rank first:
    a page (`limit`, `offset`) of the functions and of the participants, and how many of
    each there are."""

    type: CompetitionType
    rounds: list[Round]
    functions: list[FunctionStanding]
    participants: list[ParticipantStanding]
    functions_total: int
    participants_total: int


# ---------------------------------------------------------------- operations and errors


class ApiError(TypedDict):
    """Every error: a stable code, a message saying what to do, the HTTP status; a 429 or
    503 also says in `retry_after` how many seconds to wait (as its Retry-After header)."""

    error: str
    message: str
    status: int
    retry_after: NotRequired[int]
    resets_at: NotRequired[Time]


class Health(TypedDict):
    """The process answers."""

    status: Literal["ok"]


class Readiness(TypedDict):
    """Ready, or what is not, by part: server, database, events, scoring."""

    status: Literal["ready", "not ready"]
    problems: dict[str, str]


OPEN.update({"CompetitionSpec"})  # takes `target` for `targets`, among others
