"""The public web page: `/leaderboard` and its static files (plotly.js from the plotly package)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tornado import web

from crowdsource.server.handlers.base import JSONErrors

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
PLOTLY_JS = "plotly.min.js"

# Everything the page runs comes from this server; its data is rendered as text.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'self'; form-action 'none'"
)


def plotly_js_path() -> Path | None:
    """plotly.min.js shipped inside the installed Python `plotly` package, if any."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "package_data" / PLOTLY_JS
        if candidate.is_file():
            return candidate
    return None


class LeaderboardPageHandler(JSONErrors):
    """The live leaderboard page; it reads the public API and events like any client."""

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", PAGE_CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "no-cache")
        self.write((STATIC_DIR / "leaderboard.html").read_bytes())

    def head(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")


class StaticHandler(JSONErrors, web.StaticFileHandler):
    """Files of `crowdsource/static/`, plus `plotly.min.js` from the plotly package."""

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        if path == PLOTLY_JS:
            found = plotly_js_path()
            if found is not None:
                return str(found)
        return super().get_absolute_path(root, path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if self.path == PLOTLY_JS:
            if not os.path.isfile(absolute_path):
                raise web.HTTPError(404, "plotly is not installed: pip install plotly")
            root = os.path.dirname(absolute_path)
        return super().validate_absolute_path(root, absolute_path)

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        if "v" not in self.request.arguments:
            self.set_header("Cache-Control", "no-cache")


default_handlers = [
    (r"/leaderboard", LeaderboardPageHandler),
    (r"/leaderboard\.html", LeaderboardPageHandler),
    (r"/static/(.*)", StaticHandler, {"path": str(STATIC_DIR)}),
]
