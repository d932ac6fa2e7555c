"""A Jupyter Server extension that tells the JupyterLab panel who you are.

`GET <base_url>/crowdsource/identity[?url=SERVER]` answers the server URL, participant and
token that `crowdsource register` / `%crowdsource register` saved for the user running
Jupyter, so the panel needs no pasted token. It is served by Jupyter itself (same origin as
the page) and guarded by Jupyter's own authentication: whoever may run code in this Jupyter
could read the credentials file anyway, and nobody else gets an answer.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from crowdsource.client.config import Credentials, config_dir, current_identity
from crowdsource.client.errors import ConnectionFailed

__all__ = ["IdentityHandler", "saved_identity"]

AUTH_RESOURCE = "crowdsource"


def saved_identity(*, url: str | None = None) -> Credentials | None:
    """The current saved identity for `url`, or (without one) on the server used most recently
    (the newest credentials file: `register`, `use` and `connect` write or touch it)."""
    if url is not None:
        return current_identity(url)
    for path in sorted((config_dir() / "servers").glob("*.json"), key=_mtime, reverse=True):
        try:
            saved = json.loads(path.read_text()).get("url")
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(saved, str):
            continue
        with contextlib.suppress(ConnectionFailed):  # a hand-edited file with a bad URL
            creds = current_identity(saved)
            if creds is not None:
                return creds
    return None


def _mtime(path: Path) -> float:
    """When a credentials file was last written or touched (a vanished one: never)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def identity_json(creds: Credentials | None) -> dict[str, Any]:
    """The answer: `{"identity": {"url", "id", "name", "token"}}` or `{"identity": null}`."""
    if creds is None:
        return {"identity": None}
    return {
        "identity": {"url": creds.url, "id": creds.id, "name": creds.name, "token": creds.token}
    }


class IdentityHandler(APIHandler):
    """The saved crowdsource identity of the user running Jupyter."""

    auth_resource = AUTH_RESOURCE

    @web.authenticated
    @authorized
    def get(self) -> None:
        """Answer the saved identity; a malformed `?url=` is a 400 that says what to send."""
        try:
            creds = saved_identity(url=self.get_argument("url", None))
        except ConnectionFailed as exc:
            raise web.HTTPError(400, f"{exc}; send ?url=http://host:port") from None
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(identity_json(creds)))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell Jupyter Server that this module is an extension."""
    return [{"module": "crowdsource.jupyter_server_extension"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Add the identity route under Jupyter's base URL."""
    web_app = serverapp.web_app
    route = url_path_join(web_app.settings["base_url"], "crowdsource", "identity")
    web_app.add_handlers(".*$", [(route, IdentityHandler)])
