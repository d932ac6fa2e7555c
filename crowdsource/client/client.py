"""The Python client: one requests session per thread, typed methods, DataFrames in and out."""

from __future__ import annotations

import enum
import getpass
import json
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

import pandas as pd
import requests
from urllib3 import encode_multipart_formdata

from crowdsource.client.config import (
    Credentials,
    IdentityExists,
    add_identity,
    credentials_path,
    current_identity,
    load_identities,
    normalize_url,
    replace_token,
    use_identity,
)
from crowdsource.client.errors import (
    ConnectionFailed,
    CrowdsourceError,
    InvalidCompetition,
    InvalidSubmission,
    Timeout,
    Unauthorized,
    UnexpectedResponse,
    error_from_code,
    error_from_response,
)
from crowdsource.client.events import EventStream
from crowdsource.client.models import (
    LEADERBOARD_COLUMNS,
    Competition,
    Ensemble,
    Submission,
    Team,
    leaderboard_frame,
)
from crowdsource.client.progress import (
    PROGRESS_BYTES,
    ProgressReader,
    interactive,
    iter_with_progress,
    make_bar,
)
from crowdsource.errors import CrowdsourceError as DomainError
from crowdsource.frames import (
    PARQUET,
    decode_frame,
    read_parquet,
    to_parquet,
    with_id_column,
)
from crowdsource.times import from_now
from crowdsource.validation import Shape, check_frame, expected_ids

if TYPE_CHECKING:
    from crowdsource.client.competitor import Competitor, RunResult
    from crowdsource.client.reproduce import Reproduction

__all__ = ["Client"]

API = "/api/v1"
CHECKS_KEPT = 4  # competitions (with their dataset ids) `Client.check` keeps


class Keep(enum.Enum):
    """The default of an edit's arguments: leave that field as it is."""

    KEEP = "keep"


KEEP = Keep.KEEP


def _network_reason(exc: BaseException) -> str:
    """The useful part of a requests network error, on one line."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    if "Read timed out" in text or isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


def _iso(value: datetime | timedelta | str | None) -> str | None:
    """A time for the API: ISO UTC; a timedelta counts from now."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, timedelta):
        value = from_now(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def _rewind(data: Any) -> bool:
    """Make a request body ready to send again; False if it cannot be (a consumed stream)."""
    if data is None or isinstance(data, (bytes, str, dict, list, tuple)):
        return True
    if hasattr(data, "seek"):
        data.seek(0)
        return True
    return False


def _default_name() -> str:
    """A participant name that is unlikely to be taken."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "participant"
    return f"{user}-{uuid.uuid4().hex[:6]}"


class Client:
    """A connection to one crowdsource server; `Client('host:port')` as in the seed."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        session: requests.Session | None = None,
        progress: bool | None = None,
    ) -> None:
        self.url = normalize_url(url)
        self.timeout = timeout
        self.progress = interactive() if progress is None else progress
        self.participant: dict[str, Any] | None = None
        self.token = token or os.environ.get("CROWDSOURCE_TOKEN") or self._saved_token()
        self._session = session
        self._local = threading.local()
        self._id_columns: dict[int, str] = {}
        self._competitor: Competitor | None = None
        self._checked: OrderedDict[int, Competition] = OrderedDict()  # pre-flight's, newest last
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        who = (self.participant or {}).get("name") or ("token" if self.token else "anonymous")
        return f"Client({self.url!r}, {who})"

    # -- plumbing ---------------------------------------------------------------------------

    def _saved_token(self) -> str | None:
        """The token of this server's current saved identity, if any."""
        creds = current_identity(self.url)
        if creds is None:
            return None
        self.participant = {"id": creds.id, "name": creds.name}
        return creds.token

    @property
    def session(self) -> requests.Session:
        """The HTTP session for the calling thread (or the one passed in)."""
        if self._session is not None:
            return self._session
        if not hasattr(self._local, "session"):
            self._local.session = _session_for(self.url)
        session: requests.Session = self._local.session
        return session

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        """Authorization plus any extra headers."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send one request to `/api/v1{path}`; raise the matching CrowdsourceError on failure."""
        url = f"{self.url}{API}{path}"
        kwargs["headers"] = self._headers(kwargs.get("headers"))
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self._send(method, url, **kwargs)
        except requests.Timeout:
            raise Timeout(
                f"{method} {url}: no answer within {kwargs['timeout']} s (server busy or down?)"
            ) from None
        except requests.RequestException as exc:
            raise ConnectionFailed(
                f"cannot reach the crowdsource server at {self.url}: {_network_reason(exc)}"
            ) from None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send a request; an idempotent one (a GET, or carrying an Idempotency-Key) once more
        if its connection fails, as a pooled keep-alive connection that the server closed in
        the meantime does."""
        idempotent = method in ("GET", "HEAD") or "Idempotency-Key" in kwargs["headers"]
        try:
            return self.session.request(method, url, **kwargs)
        except requests.ConnectionError as exc:
            if isinstance(exc, requests.Timeout) or not (
                idempotent and _rewind(kwargs.get("data"))
            ):
                raise
        return self.session.request(method, url, **kwargs)

    def _error(self, response: requests.Response) -> CrowdsourceError:
        """The error for a failed response, with a hint when it is not our API at all."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "error" not in body:
            return UnexpectedResponse(
                f"{response.request.method} {response.url} answered HTTP {response.status_code}"
                f" without a crowdsource error: is {self.url} the right server URL?",
                status=response.status_code,
            )
        error = error_from_response(response.status_code, body, response.reason or "error")
        if isinstance(error, Unauthorized) and not self.token:
            error.message += " (no token: run `crowdsource register` or set CROWDSOURCE_TOKEN)"
            error.args = (error.message,)
        return error

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request and decode its JSON answer."""
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse(
                f"{method} {response.url} did not answer JSON: is {self.url} a crowdsource server?"
            ) from None

    def _upload(self, body: bytes, description: str) -> bytes | ProgressReader:
        """The body to send, wrapped in a progress bar when large and interactive."""
        if self.progress and len(body) > PROGRESS_BYTES:
            return ProgressReader(body, make_bar(len(body), description))
        return body

    def _download(self, path: str, description: str, **kwargs: Any) -> requests.Response:
        """GET a possibly large body, with a progress bar when large and interactive."""
        response = self.request("GET", path, stream=True, **kwargs)
        size = int(response.headers.get("Content-Length") or 0)
        if self.progress and size > PROGRESS_BYTES:
            chunks = iter_with_progress(response.iter_content(1 << 16), make_bar(size, description))
            response._content = b"".join(chunks)
        return response

    def _frame(self, path: str, description: str) -> pd.DataFrame:
        """GET a frame, asking for Parquet and accepting split-form JSON."""
        response = self._download(path, description, headers={"Accept": PARQUET})
        if response.headers.get("Content-Type", "").startswith(PARQUET):
            return read_parquet(response.content)
        try:
            return decode_frame(response.json())
        except ValueError:
            raise UnexpectedResponse(f"GET {response.url} did not answer a frame") from None

    def _competition(self, data: dict[str, Any]) -> Competition:
        """A Competition bound to this client; remember its id column."""
        competition = Competition.from_json(data, self)
        self._id_columns[competition.id] = competition.id_column
        return competition

    # -- participants -------------------------------------------------------------------------

    def register(self, name: str | None = None, *, save: bool = True) -> dict[str, Any]:
        """Create a participant and act as them; with `save`, add them to this server's saved
        identities as the current one (a name already saved there is refused: IdentityExists)."""
        name = name or _default_name()
        if save and name.strip() in load_identities(self.url).identities:
            raise IdentityExists(
                f"{name.strip()!r} is already registered and saved for {self.url}:"
                f" `crowdsource use {name.strip()}` acts as them;"
                " register another name for a new participant"
            )
        before, self.token = self.token, None  # anonymous: a stale saved token would be refused
        try:
            data = self._json("POST", "/participants", json={"name": name})
        except CrowdsourceError:
            self.token = before
            raise
        self.token = str(data["token"])
        self.participant = {"id": data.get("id"), "name": data.get("name")}
        if save:
            creds = Credentials(self.url, self.token, data.get("id"), data.get("name"))
            data["credentials_file"] = str(add_identity(creds))
        return dict(data)

    def use(self, name: str) -> dict[str, Any]:
        """Act as the saved identity `name` from now on, here and for later clients of this
        server (UnknownIdentity lists the saved ones)."""
        creds = use_identity(self.url, name)
        self.token = creds.token
        self.participant = {"id": creds.id, "name": creds.name}
        return {"id": creds.id, "name": creds.name, "url": self.url}

    def identities(self) -> list[dict[str, Any]]:
        """The identities saved for this server: name, id and whether each is current."""
        saved = load_identities(self.url)
        return [
            {"name": name, "id": creds.id, "current": name == saved.current}
            for name, creds in saved.identities.items()
        ]

    def rotate_token(self, *, save: bool = True) -> dict[str, Any]:
        """Replace this participant's token with a new one (the old one stops working at
        once); with `save`, the saved identity gets the new token."""
        data = self._json("POST", "/participants/me/token")
        self.token = str(data["token"])
        self.participant = {"id": data.get("id"), "name": data.get("name")}
        if save:
            creds = Credentials(self.url, self.token, data.get("id"), data.get("name"))
            data["credentials_file"] = str(replace_token(creds))
        return dict(data)

    @property
    def credentials_file(self) -> str:
        """Where this server's credentials are (or would be) saved."""
        return str(credentials_path(self.url))

    def me(self) -> dict[str, Any]:
        """Who the token belongs to: `{"id", "name", "created_at"}`."""
        data = dict(self._json("GET", "/participants/me"))
        self.participant = {"id": data.get("id"), "name": data.get("name")}
        return data

    def users(self) -> pd.DataFrame:
        """All participants, as a frame of id, name, created_at."""
        data = self._json("GET", "/participants")
        return pd.DataFrame(data.get("participants", []), columns=["id", "name", "created_at"])

    # -- competitions ---------------------------------------------------------------------------

    def competitions(self, type: str | None = None, status: str | None = None) -> list[Competition]:
        """Competitions, newest first, optionally of one type and status (`open`, ...)."""
        params = {k: v for k, v in (("type", type), ("status", status)) if v}
        return [self._competition(item) for item in self._pages("/competitions", params)]

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paged listing (`{<items>, total, limit, offset}`), page by page;
        the items are under the path's last word (`/competitions`: `competitions`)."""
        key, offset = path.rsplit("/", 1)[-1], 0
        while True:
            data = self._json("GET", path, params={**params, "offset": offset})
            items = data.get(key, [])
            yield from items
            offset += data.get("limit") or len(items)  # /leaderboards pages by competition
            if not items or "total" not in data or offset >= data["total"]:
                return

    def competition(self, id: int) -> Competition:
        """One competition by id."""
        return self._competition(self._json("GET", f"/competitions/{int(id)}"))

    def dataset(self, id: int) -> pd.DataFrame:
        """The frame participants of competition `id` see."""
        return self._frame(f"/competitions/{int(id)}/dataset", f"dataset {id}")

    def answer(self, id: int) -> pd.DataFrame:
        """The answer rows known so far (host only)."""
        return self._frame(f"/competitions/{int(id)}/answer", f"answer {id}")

    def host(
        self,
        dataset: pd.DataFrame,
        answer: pd.DataFrame | None = None,
        *,
        type: str = "classify",
        title: str | None = None,
        description: str = "",
        metric: str | None = None,
        targets: Sequence[str] | str | None = None,
        id_column: str = "id",
        opens_at: datetime | timedelta | str | None = None,
        closes_at: datetime | timedelta | str | None = None,
        daily_limit: int | None = None,
        public_fraction: float = 1.0,
        max_team_size: int = 5,
        final_submissions: int = 2,
        public_scoring: str = "plain",
        ladder_step: float = 0.01,
    ) -> Competition:
        """Create a competition from DataFrames; `answer` may be None for a later `resolve`.
        Each participant's `final_submissions` best (or selected) ones count on the private
        board. `public_scoring="ladder"` makes the public board a Ladder of `ladder_step`
        (docs/ladder.md)."""
        dataset = with_id_column(dataset, id_column)
        _require_column(dataset, id_column, "dataset", InvalidCompetition)
        if answer is not None:
            answer = with_id_column(answer, id_column)
            _require_column(answer, id_column, "answer", InvalidCompetition)
        spec = {
            "title": title or f"{type} competition",
            "description": description,
            "type": type,
            "metric": metric,
            "id_column": id_column,
            "targets": _targets(targets, answer, id_column),
            "opens_at": _iso(opens_at),
            "closes_at": _iso(closes_at),
            "daily_limit": daily_limit,
            "public_fraction": public_fraction,
            "max_team_size": max_team_size,
            "final_submissions": final_submissions,
            "public_scoring": public_scoring,
            "ladder_step": ladder_step,
        }
        if metric is None:
            del spec["metric"]
        # a form of raw Parquet parts: stored as sent, with no base64 or JSON to decode
        parts = {"spec": ("spec.json", json.dumps(spec).encode(), "application/json")}
        parts["dataset"] = ("dataset.parquet", to_parquet(dataset), PARQUET)
        if answer is not None:
            parts["answer"] = ("answer.parquet", to_parquet(answer), PARQUET)
        body, content_type = encode_multipart_formdata(parts)
        data = self._json(
            "POST",
            "/competitions",
            data=self._upload(body, "upload"),
            headers={"Content-Type": content_type},
        )
        return self._competition(data)

    def resolve(self, id: int, answer_rows: pd.DataFrame) -> dict[str, Any]:
        """Add or replace answer rows by id; every affected submission is re-scored."""
        column = self._id_columns.get(int(id))
        rows = with_id_column(answer_rows, column) if column else answer_rows
        body = self._upload(to_parquet(rows), "answer")
        data = self._json(
            "POST",
            f"/competitions/{int(id)}/answer",
            data=body,
            headers={"Content-Type": PARQUET},
        )
        return dict(data)

    def close_competition(self, id: int) -> Competition:
        """Close a competition you host, now."""
        return self._competition(self._json("POST", f"/competitions/{int(id)}/close"))

    # -- the host's tools ------------------------------------------------------------------------

    def edit_competition(
        self,
        id: int,
        *,
        title: str | Keep = KEEP,
        description: str | Keep = KEEP,
        closes_at: datetime | timedelta | str | Keep | None = KEEP,
        daily_limit: int | Keep | None = KEEP,
    ) -> Competition:
        """Change what you host: a later `closes_at` reopens a closed competition; None
        means never closing, or no daily limit. Arguments left out stay as they are."""
        fields = {"title": title, "description": description, "daily_limit": daily_limit}
        body = {k: v for k, v in fields.items() if v is not KEEP}
        if closes_at is not KEEP:
            body["closes_at"] = _iso(closes_at)
        return self._competition(self._json("PATCH", f"/competitions/{int(id)}", json=body))

    def reopen(self, id: int, *, closes_at: datetime | timedelta | str | None) -> Competition:
        """Reopen a competition you host until `closes_at` (None: no close time)."""
        return self.edit_competition(id, closes_at=closes_at)

    def delete_competition(self, id: int) -> dict[str, Any]:
        """Delete a competition you host if nobody submitted, else archive it (hidden from
        lists, still readable by id): `{"id", "deleted", "archived"}`."""
        return dict(self._json("DELETE", f"/competitions/{int(id)}"))

    def disqualify(self, id: int, *, participant: int | str, reason: str) -> dict[str, Any]:
        """Disqualify a participant (id or name) from a competition you host: they leave its
        boards and their submissions are refused with `reason`."""
        body = {"participant": participant, "reason": reason}
        return dict(self._json("POST", f"/competitions/{int(id)}/disqualified", json=body))

    def requalify(self, id: int, *, participant: int) -> dict[str, Any]:
        """Lift a participant's disqualification from a competition you host."""
        path = f"/competitions/{int(id)}/disqualified/{int(participant)}"
        return dict(self._json("DELETE", path))

    def disqualified(self, id: int) -> list[dict[str, Any]]:
        """Who you disqualified from a competition you host, and why."""
        return list(self._json("GET", f"/competitions/{int(id)}/disqualified")["disqualified"])

    # -- submissions ----------------------------------------------------------------------------

    def submit(
        self,
        id: int,
        predictions: pd.DataFrame,
        *,
        wait: bool = True,
        idempotency_key: str | None = None,
        function: Callable[..., Any] | None = None,
        share_source: bool = False,
        provenance: dict[str, Any] | None = None,
    ) -> Submission:
        """Submit predictions (sent as Parquet); with `wait` the answer is already scored.
        With `function` (the one that made them) the submission records where it came from,
        its source too if `share_source` (docs/provenance.md); `provenance` gives that record
        ready-made."""
        from crowdsource.client import provenance as origin

        if provenance is None and function is not None:
            name = _function_name(function)
            provenance = origin.collect(function, name=name, share_source=share_source)
        frame = _prediction_frame(predictions, self._id_columns.get(int(id)))
        headers = {"Content-Type": PARQUET}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        data = self._json(
            "POST",
            f"/competitions/{int(id)}/submissions",
            data=self._upload(_encoded(frame, origin.parquet_metadata(provenance)), "submission"),
            headers=headers,
            params={} if wait else {"wait": "false"},
        )
        return Submission.from_json(data)

    def check(self, competition_id: int, predictions: pd.DataFrame) -> int:
        """Check predictions as the server would, without submitting (the pre-flight check):
        returns their rows, or raises InvalidSubmission with the server's very message. The
        competition and its dataset ids are fetched once (the last few checked are kept)."""
        with self._lock:
            competition = self._checked.pop(int(competition_id), None)
        if competition is None:
            competition = self.competition(competition_id)
        with self._lock:
            self._checked[competition.id] = competition
            while len(self._checked) > CHECKS_KEPT:
                self._checked.popitem(last=False)
        return competition.check(predictions)

    def submissions(self, competition_id: int | None = None) -> list[Submission]:
        """Your own submissions, newest first (to one competition if given; to one you host:
        everyone's)."""
        path = (
            "/submissions"
            if competition_id is None
            else (f"/competitions/{int(competition_id)}/submissions")
        )
        data = self._json("GET", path)
        items = data.get("submissions", []) if isinstance(data, dict) else data
        return [Submission.from_json(item) for item in items]

    def final_submissions(self, competition_id: int) -> dict[str, Any]:
        """Your final submissions to a competition, the ones its private board ranks:
        `{"limit", "selected", "submissions": [ids]}` (not `selected`: your best public)."""
        return dict(self._json("GET", f"/competitions/{int(competition_id)}/final"))

    def select_final(self, competition_id: int, *, submissions: Sequence[int]) -> dict[str, Any]:
        """Select your final submissions (up to the competition's limit; an empty list goes
        back to your best public ones); possible until the competition closes."""
        body = {"submissions": [int(s) for s in submissions]}
        return dict(self._json("PUT", f"/competitions/{int(competition_id)}/final", json=body))

    def submission(self, id: int) -> Submission:
        """One submission by id."""
        return Submission.from_json(self._json("GET", f"/submissions/{int(id)}"))

    def predictions(self, submission_id: int) -> pd.DataFrame:
        """The predictions of one of your submissions."""
        path = f"/submissions/{int(submission_id)}/predictions"
        return self._frame(path, f"predictions {submission_id}")

    def provenance(self, submission_id: int) -> dict[str, Any]:
        """Where a submission came from (yours; as host, once the competition closed):
        `{"submission_id", "competition_id", "participant", "created_at", "provenance"}`,
        `provenance` None if it recorded none (docs/provenance.md)."""
        return dict(self._json("GET", f"/submissions/{int(submission_id)}/provenance"))

    def reproduce(self, submission_id: int, *, timeout: float = 600.0) -> Reproduction:
        """Run a submission's recorded function (its shared source) again on its
        competition's dataset in a fresh Python process, and compare what it returns with
        the stored predictions, aligned by id (NotReproducible if no source was shared)."""
        from crowdsource.client.reproduce import reproduce

        return reproduce(self, submission_id, timeout=timeout)

    # -- teams ----------------------------------------------------------------------------------

    def create_team(self, *, competition: int, name: str) -> Team:
        """Make a team in a competition; share its `code` with those who should join."""
        path = f"/competitions/{int(competition)}/teams"
        return Team.from_json(self._json("POST", path, json={"name": name}))

    def join_team(self, *, competition: int, code: str) -> Team:
        """Join a team with the code a member shared; your submissions count for it."""
        path = f"/competitions/{int(competition)}/teams/join"
        return Team.from_json(self._json("POST", path, json={"code": code}))

    def team(self, *, competition: int) -> Team:
        """Your team in a competition, with its join code (NotFound if you are in none)."""
        return Team.from_json(self._json("GET", f"/competitions/{int(competition)}/teams/mine"))

    # -- leaderboards -----------------------------------------------------------------------------

    def leaderboard(
        self,
        id: int,
        board: str = "public",
        *,
        limit: int | None = None,
        offset: int | None = None,
        around_me: bool = False,
    ) -> pd.DataFrame:
        """One competition's leaderboard: rank, participant, score, submissions, last time;
        all of it, or `limit` entries from `offset`, or (`around_me`) `limit` entries (21
        unless given) centred on your own. `.attrs` holds `total` (entries on the board),
        `offset` and, with `around_me`, `me` (your entry's participant_id, None if none)."""
        params: dict[str, Any] = {"board": board}
        params.update({k: v for k, v in (("limit", limit), ("offset", offset)) if v is not None})
        if around_me:
            params["around"] = "me"
        data = self._json("GET", f"/competitions/{int(id)}/leaderboard", params=params)
        frame = leaderboard_frame(data)
        entries = data.get("entries", [])
        frame.attrs.update(total=data.get("total", len(entries)), offset=data.get("offset", 0))
        if around_me:
            me = data.get("me")
            frame.attrs["me"] = None if me is None else me["participant"]["id"]
        return frame

    def leaderboard_csv(self, id: int, *, board: str = "public") -> str:
        """One competition's leaderboard as CSV text, as the server exports it."""
        response = self.request(
            "GET",
            f"/competitions/{int(id)}/leaderboard",
            params={"board": board},
            headers={"Accept": "text/csv"},
        )
        return response.text

    def leaderboards(self) -> pd.DataFrame:
        """Every competition's boards in one frame, keyed by competition_id and board."""
        frames = []
        for board in self._pages("/leaderboards", {}):
            frame = leaderboard_frame(board)
            frame.insert(0, "board", board.get("board", "public"))
            frame.insert(0, "competition_id", board.get("competition_id"))
            frames.append(frame)
        columns = ["competition_id", "board", *LEADERBOARD_COLUMNS]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)

    def ensemble(self, competition_id: int, *, k: int | None = None) -> Ensemble:
        """The crowd's ensemble of a competition you host: the blend of the top `k` entries'
        final submissions and its score (without `k`, its score for every k)."""
        params = {} if k is None else {"k": int(k)}
        path = f"/competitions/{int(competition_id)}/ensemble"
        return Ensemble.from_json(self._json("GET", path, params=params))

    def standings(self, *, type: str, of: str = "functions") -> pd.DataFrame:
        """Functions (or, with `of="participants"`, participants) ranked across every round
        of a competition type by mean normalised rank (0 best); an edited function is a new
        version, linked to the one before. `attrs` holds the rounds and each row's ranks."""
        from crowdsource.client.standings import standings_frame

        return standings_frame(self.standings_data(type=type), of=of)

    def standings_data(self, *, type: str) -> dict[str, Any]:
        """The standings of a competition type as the server sends them (`docs/api.md`)."""
        return dict(self._json("GET", "/standings", params={"type": type}))

    # -- events and competing -------------------------------------------------------------------

    def events(self, *, competition: int | None = None, submissions: str = "all") -> EventStream:
        """A connected stream of server events (iterate it; close it, or use `with`): of one
        competition or every one; everyone's submission events, or only yours (`"mine"`)."""
        stream = EventStream(
            self.url, token=self.token, competition=competition, submissions=submissions
        )
        return stream.connect()

    def wait_for_leaderboard(
        self, id: int, *, entries: int = 1, timeout: float = 60.0
    ) -> pd.DataFrame:
        """Block until competition `id`'s public board has `entries` rows; return it."""
        from crowdsource.client.live import LiveBoard

        self.competition(id)  # NotFound now, rather than a Timeout later
        live = LiveBoard(self, id).start()
        try:
            if not live.wait(lambda board: board["total"] >= entries, timeout=timeout):
                total = live.board["total"]
                raise Timeout(
                    f"competition {id} has {total} of {entries} leaderboard entries"
                    f" after {timeout} s"
                )
        finally:
            live.stop()
        return self.leaderboard(id)

    def compete(
        self,
        type: str,
        fn: Callable[[Competition], pd.DataFrame | None],
        *,
        name: str | None = None,
        on_result: Callable[[RunResult], None] | None = None,
        share_source: bool = False,
    ) -> Competitor:
        """Run `fn` on every open competition of `type`, now and to come; submit its frames
        (each recording `fn`'s name, code digest and, with `share_source`, its source)."""
        from crowdsource.client.competitor import Competitor

        if self._competitor is None or self._competitor.stopped:
            self._competitor = Competitor(self)
        if on_result is not None:
            self._competitor.on_result(on_result)
        self._competitor.add(type, fn, name=name, share_source=share_source)
        return self._competitor.start()

    def close(self) -> None:
        """Stop competing and close the HTTP session."""
        if self._competitor is not None:
            self._competitor.stop()
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _function_name(fn: Callable[..., Any]) -> str:
    """A function's name as the competitor registers it."""
    from crowdsource.client.competitor import _function_name as name

    return name(fn)


def _require_column(
    frame: pd.DataFrame, column: str, what: str, error: type[CrowdsourceError]
) -> None:
    """Raise `error` naming the missing id column and the columns there are."""
    if column not in frame.columns:
        have = ", ".join(map(str, frame.columns)) or "none"
        raise error(
            f"the {what} has no {column!r} id column (columns: {have});"
            f" add it or pass id_column= naming the id column"
        )


def _targets(
    targets: Sequence[str] | str | None, answer: pd.DataFrame | None, id_column: str
) -> list[str]:
    """The target columns: given, or the answer's columns other than the id."""
    if isinstance(targets, str):
        return [targets]
    if targets is not None:
        return list(targets)
    if answer is None:
        raise InvalidCompetition("targets= is required when there is no answer yet")
    return [str(c) for c in answer.columns if c != id_column]


def _prediction_frame(predictions: Any, id_column: str | None) -> pd.DataFrame:
    """Check the predictions are a frame with the id column (moved out of the index if needed)."""
    if isinstance(predictions, pd.Series):
        predictions = predictions.to_frame()
    if not isinstance(predictions, pd.DataFrame):
        raise InvalidSubmission(
            f"predictions must be a DataFrame, not {type(predictions).__name__}"
        )
    if id_column is None:
        named = [n for n in predictions.index.names if n is not None]
        return predictions.reset_index() if named else predictions
    return with_id_column(predictions, id_column)


def _encoded(frame: pd.DataFrame, metadata: dict[bytes, bytes] | None = None) -> bytes:
    """Predictions as the Parquet bytes sent (with `metadata` in the footer: provenance); a
    frame Parquet cannot hold is a BadRequest."""
    try:
        return to_parquet(frame, what="predictions", metadata=metadata)
    except DomainError as exc:
        raise error_from_code(exc.code, exc.message) from None


def preflight(competition: Competition, predictions: Any, dataset: pd.DataFrame) -> int:
    """Run the server's checks on predictions for `competition` here; raise what it would."""
    frame = _prediction_frame(predictions, competition.id_column)
    shape = Shape(
        id_column=competition.id_column,
        metric=competition.metric,
        targets=tuple(competition.targets),
        classes=tuple(competition.classes) if competition.classes else None,
        rows=competition.rows,
    )
    expected = expected_ids(dataset[competition.id_column].to_numpy())
    try:
        return check_frame(shape, frame, expected)
    except DomainError as exc:  # the server's refusal, as the client would have received it
        raise error_from_code(exc.code, exc.message) from None


def _session_for(url: str) -> requests.Session:
    """A session for one server, with the environment's proxy and CA settings read once
    rather than on every request (requests re-reads them each time, about 0.5 ms)."""
    session = requests.Session()
    session.proxies.update(requests.utils.get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
    return session
