"""The notebook layer: `%crowdsource` magics, `@compete`, live leaderboards, a browser."""

from __future__ import annotations

from typing import Any

__all__ = [
    "CompetitionBrowser",
    "LeaderboardWidget",
    "client",
    "compete",
    "competition",
    "connect",
    "load_ipython_extension",
    "running",
    "stop",
    "unload_ipython_extension",
]

_HOMES = {
    "CompetitionBrowser": "crowdsource.notebook.browser",
    "LeaderboardWidget": "crowdsource.notebook.leaderboard",
    "client": "crowdsource.notebook.session",
    "competition": "crowdsource.notebook.session",
    "connect": "crowdsource.notebook.session",
    "compete": "crowdsource.notebook.compete",
    "running": "crowdsource.notebook.compete",
    "stop": "crowdsource.notebook.compete",
    "load_ipython_extension": "crowdsource.notebook.magics",
    "unload_ipython_extension": "crowdsource.notebook.magics",
}


def __getattr__(name: str) -> Any:
    """Import each public name on first use (plotly and widgets load only when needed)."""
    if name not in _HOMES:
        raise AttributeError(f"module 'crowdsource.notebook' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
