"""Where the server is and who we are: URL normalisation and the credentials files."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from crowdsource.client.errors import ConnectionFailed

__all__ = [
    "DEFAULT_URL",
    "Credentials",
    "config_dir",
    "credentials_path",
    "glue_option_values",
    "load_credentials",
    "normalize_url",
    "save_credentials",
]

DEFAULT_URL = "http://127.0.0.1:8889"


@dataclass(frozen=True)
class Credentials:
    """A participant's identity on one server, as saved by `register`."""

    url: str
    token: str
    id: int | None = None
    name: str | None = None


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
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", urlsplit(url).netloc + urlsplit(url).path)
    return config_dir() / "servers" / f"{slug.strip('_')}.json"


def load_credentials(url: str) -> Credentials | None:
    """Read the saved credentials for `url`, or None if there are none (or they are broken)."""
    path = credentials_path(url)
    try:
        data = json.loads(path.read_text())
        return Credentials(url, str(data["token"]), data.get("id"), data.get("name"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_credentials(creds: Credentials) -> Path:
    """Write the credentials for their server with mode 600; return the file's path."""
    path = credentials_path(creds.url)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    payload = {"url": creds.url, "id": creds.id, "name": creds.name, "token": creds.token}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2)
    return path
