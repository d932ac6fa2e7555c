"""The notebook widgets: a live leaderboard (an anywidget) and a competition browser."""

from __future__ import annotations

from crowdsource.notebook.browser import CompetitionBrowser
from crowdsource.notebook.leaderboard import LeaderboardWidget

__all__ = ["CompetitionBrowser", "LeaderboardWidget"]
