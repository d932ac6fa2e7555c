"""The notebook's connection: one connected Client per kernel, and user mistakes as UsageError."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from IPython.core.error import UsageError

from crowdsource.client import (
    Client,
    Competition,
    ConnectionFailed,
    CrowdsourceError,
    NotFound,
    Unauthorized,
)
from crowdsource.client.config import mark_used

if TYPE_CHECKING:
    from crowdsource.notebook.embedded import EmbeddedServer

__all__ = [
    "NOT_CONNECTED",
    "NotebookCompetition",
    "client",
    "competition",
    "connect",
    "keep_identity",
    "kept_identities",
    "state",
    "usage_errors",
    "use",
]

NOT_CONNECTED = (
    "not connected to a crowdsource server: run `%crowdsource connect URL`"
    " (or `%crowdsource serve` for a server inside this kernel) first"
)


@dataclass
class NotebookState:
    """What this kernel is connected to: a client, and the embedded server if it started one."""

    client: Client | None = None
    server: EmbeddedServer | None = None
    kept: dict[str, dict[str, str]] = field(default_factory=dict)  # url -> name -> token
    connect_note: str | None = None  # what the last connect could not do


_STATE = NotebookState()
_LOCK = threading.Lock()


def state() -> NotebookState:
    """This kernel's connection state."""
    return _STATE


def client() -> Client:
    """The notebook's connected client; UsageError (saying what to type) if there is none."""
    if _STATE.client is None:
        raise UsageError(NOT_CONNECTED)
    return _STATE.client


def identified_client() -> Client:
    """The connected client, which must have a participant token."""
    connected = client()
    if not connected.token:
        raise UsageError(
            f"connected to {connected.url} anonymously: run `%crowdsource register NAME` first"
        )
    return connected


def connect(url: str | None = None, *, token: str | None = None) -> Client:
    """Connect the notebook to a server (checking that it answers) and return the client: as
    the participant this notebook acts as there already, else with the token given or saved.
    A saved token the server refuses (a new server at an old address) leaves it anonymous."""
    with usage_errors():
        new = Client(url, token=token, progress=False)
        now = _STATE.client
        if token is None and now is not None and now.url == new.url:
            new.token, new.participant = now.token, now.participant
        try:
            new.competitions()
            if new.token:
                new.me()
        except Unauthorized:
            if token is not None:
                raise UsageError(
                    f"{new.url} does not accept this token: run `%crowdsource register NAME`"
                    " or `%crowdsource connect URL --token TOKEN` with a valid token"
                ) from None
            name = (new.participant or {}).get("name")
            new.token, new.participant = None, None
            new.competitions()
            _STATE.connect_note = f"the token saved for {name!r} is not known to this server"
            return use(new)
    _STATE.connect_note = None
    if token is None:
        mark_used(new.url)  # its saved identity is the one the JupyterLab panel picks
    return use(new)


def keep_identity(registered: Client) -> None:
    """Remember an identity that is not saved to the credentials file (an embedded server's,
    or `register --no-save`), so `%crowdsource use NAME` can return to it in this kernel."""
    name = (registered.participant or {}).get("name")
    if name and registered.token:
        with _LOCK:
            _STATE.kept.setdefault(registered.url, {})[str(name)] = registered.token


def kept_identities(url: str) -> dict[str, str]:
    """The identities this kernel keeps for a server, by name."""
    return dict(_STATE.kept.get(url, {}))


def use(new: Client) -> Client:
    """Make `new` the notebook's connected client (earlier references keep their identity)."""
    with _LOCK:
        _STATE.client = new
    return new


def competition(id: int) -> NotebookCompetition:
    """Competition `id` from the connected server, bound to the notebook's client."""
    connected = client()
    with usage_errors(competition=id):
        found = connected.competition(int(id))
    return NotebookCompetition.wrap(found)


class NotebookCompetition(Competition):
    """A Competition with a one-line repr and an HTML card for notebooks."""

    @classmethod
    def wrap(cls, competition: Competition) -> NotebookCompetition:
        """The same competition, as a NotebookCompetition."""
        if isinstance(competition, cls):
            return competition
        wrapped = cast(NotebookCompetition, cls.from_json(competition.raw, competition.client))
        wrapped._dataset = competition._dataset
        return wrapped

    def __repr__(self) -> str:
        return f"<Competition {summary(self)}>"

    def _repr_html_(self) -> str:
        """A small table of the competition's public details."""
        from crowdsource.notebook.display import competition_card

        return competition_card(self)


def summary(competition: Competition) -> str:
    """One line: id, title, type, metric and direction, status, rows."""
    from crowdsource.notebook.display import direction

    ranks = direction(competition.higher_is_better)
    return (
        f"{competition.id} {competition.title!r}: {competition.type}, {competition.metric}"
        f" ({ranks}), {competition.status}, {competition.rows} rows,"
        f" {competition.answer_rows} answer rows"
    )


@contextmanager
def usage_errors(*, competition: int | None = None) -> Iterator[None]:
    """Turn the client's errors into one-line UsageErrors that say what to do."""
    try:
        yield
    except NotFound as exc:
        if competition is None:
            raise UsageError(str(exc)) from None
        raise UsageError(
            f"no competition {competition} on this server:"
            " run `%crowdsource competitions` to see their ids"
        ) from None
    except ConnectionFailed as exc:
        hint = "start it, or check the URL given to `%crowdsource connect`"
        raise UsageError(f"{exc}; {hint}") from None
    except CrowdsourceError as exc:
        raise UsageError(_one_line(str(exc))) from None


def _one_line(text: str) -> str:
    """A message on one line."""
    return " ".join(text.split())


def describe_error(exc: BaseException) -> str:
    """The message of an error, on one line, for a widget."""
    if isinstance(exc, CrowdsourceError | UsageError):
        return _one_line(str(exc))
    return _one_line(f"{type(exc).__name__}: {exc}")


def namespace_frame(namespace: dict[str, Any], name: str) -> Any:
    """The DataFrame held by variable `name`; UsageError if there is none or it is not a frame."""
    import pandas as pd

    if name not in namespace:
        raise UsageError(
            f"no variable named {name!r} in this notebook: assign your DataFrame to it first"
        )
    value = namespace[name]
    if isinstance(value, pd.Series):
        return value.to_frame()
    if not isinstance(value, pd.DataFrame):
        raise UsageError(
            f"{name!r} is a {type(value).__name__}, not a DataFrame: pass the name of a DataFrame"
            " (start from `competition.template()`)"
        )
    return value
