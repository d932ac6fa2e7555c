"""Where the server is and who we are: URL normalisation and the credentials files.

One file per server, `$CROWDSOURCE_CONFIG_DIR/servers/<host_port>.json` (mode 600), holds
every identity registered there and which one is current::

    {
      "format": 2,
      "url": "http://127.0.0.1:8889",
      "current": "alice",
      "identities": {
        "alice": {"id": 1, "token": "cs_..."},
        "bob": {"id": 2, "token": "cs_..."}
      }
    }

A file of the first format (`{"url", "id", "name", "token"}`: one identity) is read as an
identity that is current, and rewritten in this format the first time it is read.
`current_identity(url)` is the reader other tools (the JupyterLab panel's server extension)
call.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from crowdsource.client.errors import ConnectionFailed, IdentityExists, UnknownIdentity

__all__ = [
    "DEFAULT_URL",
    "Credentials",
    "IdentityExists",
    "ServerIdentities",
    "UnknownIdentity",
    "add_identity",
    "config_dir",
    "credentials_path",
    "current_identity",
    "glue_option_values",
    "load_credentials",
    "load_identities",
    "mark_used",
    "normalize_url",
    "replace_token",
    "save_credentials",
    "use_identity",
]

DEFAULT_URL = "http://127.0.0.1:8889"
FORMAT = 2


@dataclass(frozen=True)
class Credentials:
    """A participant's identity on one server, as saved by `register`."""

    url: str
    token: str
    id: int | None = None
    name: str | None = None


@dataclass
class ServerIdentities:
    """Every identity saved for one server, by name, and the current one's name."""

    url: str
    identities: dict[str, Credentials] = field(default_factory=dict)
    current: str | None = None

    def current_identity(self) -> Credentials | None:
        """The identity in use, if any."""
        return self.identities.get(self.current) if self.current else None

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "format": FORMAT,
            "url": self.url,
            "current": self.current,
            "identities": {
                name: {"id": creds.id, "token": creds.token}
                for name, creds in self.identities.items()
            },
        }

    @classmethod
    def from_json(cls, url: str, data: Any) -> ServerIdentities:
        """Read either file format (the first one held a single identity)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if "identities" not in data:  # the first format: one identity, current
            name = str(data.get("name") or data.get("id") or "participant")
            creds = Credentials(url, str(data["token"]), data.get("id"), name)
            return cls(url, {name: creds}, name)
        identities = {
            str(name): Credentials(url, str(item["token"]), item.get("id"), str(name))
            for name, item in data["identities"].items()
        }
        current = data.get("current")
        return cls(url, identities, current if current in identities else None)


def normalize_url(url: str | None) -> str:
    """Return `scheme://host:port[/prefix]` from a URL with or without scheme or `/api/v1`."""
    raw = (url or os.environ.get("CROWDSOURCE_URL") or DEFAULT_URL).strip()
    if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", raw):
        raw = "http://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionFailed(
            f"not a server URL: {url or raw!r} (expected host:port or http://host:port)"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConnectionFailed(f"bad port in server URL {raw!r}") from None
    path = re.sub(r"/api/v1/?$", "", parts.path.rstrip("/"))
    return f"{parts.scheme}://{parts.netloc}{path}"


def glue_option_values(argv: list[str], options: tuple[str, ...] = ("--token",)) -> list[str]:
    """`--token -abc` as `--token=-abc`: argparse would read a value that begins with "-" as an
    option (tokens issued before the `cs_` prefix can). A word shaped like an option is left."""
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word in options:
            value = next(words, None)
            if value is None:
                out.append(word)
            elif value.startswith("-") and not re.fullmatch(r"--?[a-z][a-z0-9-]*", value):
                out.append(f"{word}={value}")
            else:
                out.extend([word, value])
        else:
            out.append(word)
    return out


def config_dir() -> Path:
    """The client's configuration folder: $CROWDSOURCE_CONFIG_DIR or ~/.config/crowdsource."""
    env = os.environ.get("CROWDSOURCE_CONFIG_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "crowdsource"


def credentials_path(url: str) -> Path:
    """The credentials file for one server."""
    url = normalize_url(url)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", urlsplit(url).netloc + urlsplit(url).path)
    return config_dir() / "servers" / f"{slug.strip('_')}.json"


def load_identities(url: str) -> ServerIdentities:
    """Every identity saved for `url` (none if the file is missing or unreadable)."""
    url = normalize_url(url)
    path = credentials_path(url)
    try:
        data = json.loads(path.read_text())
        found = ServerIdentities.from_json(url, data)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ServerIdentities(url)
    if data.get("format") != FORMAT:  # migrate a first-format file once, in place
        with contextlib.suppress(OSError):  # a read-only config folder still reads
            _write(found)
    return found


def mark_used(url: str) -> None:
    """Touch `url`'s credentials file: the JupyterLab panel follows the server used last."""
    with contextlib.suppress(OSError):
        os.utime(credentials_path(url))


def current_identity(server_url: str) -> Credentials | None:
    """The identity in use for a server (its URL, name, id and token), or None."""
    return load_identities(server_url).current_identity()


load_credentials = current_identity  # the name the client has always used


@contextlib.contextmanager
def _changing(url: str) -> Iterator[ServerIdentities]:
    """A server's identities to change and write back, one process at a time (a notebook and
    a terminal registering at once must not lose one another's identity)."""
    path = credentials_path(url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(ImportError):
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        saved = load_identities(url)
        yield saved
        _write(saved)
    finally:
        os.close(fd)  # releases the lock


def add_identity(creds: Credentials, *, current: bool = True) -> Path:
    """Save a new identity for its server (the current one unless `current=False`).

    Raises IdentityExists if one of that name is saved there: registering never replaces a
    saved token (use `replace_token` for a rotated one)."""
    with _changing(creds.url) as saved:
        _add(saved, creds, current=current)
    return credentials_path(creds.url)


def _add(saved: ServerIdentities, creds: Credentials, *, current: bool) -> None:
    """Add one identity to a server's (IdentityExists if its name is there)."""
    name = creds.name or str(creds.id)
    if name in saved.identities:
        raise IdentityExists(
            f"an identity named {name!r} is already saved for {saved.url}"
            f" ({credentials_path(saved.url)}): `crowdsource use {name}` switches to it;"
            " register another name for a new participant"
        )
    saved.identities[name] = Credentials(saved.url, creds.token, creds.id, name)
    if current or saved.current is None:
        saved.current = name


save_credentials = add_identity


def use_identity(url: str, name: str) -> Credentials:
    """Make the saved identity `name` the current one for `url`; return it."""
    with _changing(url) as saved:
        if name not in saved.identities:
            have = ", ".join(saved.identities) or "none"
            raise UnknownIdentity(
                f"no identity named {name!r} is saved for {saved.url} (saved: {have});"
                f" `crowdsource register {name}` creates one"
            )
        saved.current = name
    return saved.identities[name]


def replace_token(creds: Credentials) -> Path:
    """Save a rotated token for an identity (adding the identity if it was not saved)."""
    with _changing(creds.url) as saved:
        name = creds.name or str(creds.id)
        saved.identities[name] = Credentials(saved.url, creds.token, creds.id, name)
        if saved.current is None:
            saved.current = name
    return credentials_path(creds.url)


def _write(saved: ServerIdentities) -> Path:
    """Write a server's identities with mode 600, whole or not at all; return the path."""
    path = credentials_path(saved.url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(saved.to_json(), handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)  # a reader never sees half a file
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
