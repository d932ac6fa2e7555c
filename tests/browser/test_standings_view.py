"""Standings across rounds (issue 15) on the /leaderboard page and in the JupyterLab panel,
in real Chromium against a real server where a few regress rounds were played with functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from playwright.sync_api import expect

import crowdsource.client as CC
from crowdsource.client.provenance import fingerprint
from tests.browser.api import CLAIM
from tests.browser.test_panel import open_panel
from tests.support import ServerProcess


def guess(competition: CC.Competition) -> pd.DataFrame:
    """Alice's function: 1.0 everywhere (the answer is 2.0)."""
    return competition.template().assign(y=1.0)


def near(competition: CC.Competition) -> pd.DataFrame:
    """The other participant's function, named with markup: 1.9 everywhere (the best)."""
    return competition.template().assign(y=1.9)


near.__qualname__ = CLAIM


def player(server: ServerProcess, name: str) -> CC.Client:
    """A client acting as a new participant."""
    client = CC.Client(server.url, progress=False)
    client.register(name, save=False)
    return client


def round_of(host: CC.Client, title: str) -> CC.Competition:
    """A regress round whose answer is 2.0 everywhere."""
    ids = np.arange(1, 21)
    return host.host(
        pd.DataFrame({"id": ids, "x": ids * 1.0}),
        pd.DataFrame({"id": ids, "y": 2.0}),
        type="regress",
        title=title,
    )


def season(server: ServerProcess) -> dict[str, Any]:
    """Two regress rounds, each played by both functions; the first closed; a third round
    open that nobody entered yet."""
    host, alice, claim = (player(server, n) for n in ("host", "alice", CLAIM))
    for i in range(2):
        comp = round_of(host, f"round {i + 1}")
        alice.submit(comp.id, guess(comp), function=guess)
        claim.submit(comp.id, near(comp), function=near)
        if i == 0:
            host.close_competition(comp.id)
    third = round_of(host, "round 3")
    return {"claim": claim, "third": third, "alice": alice.me()["id"]}


def check_standings(view: Any, world: dict[str, Any]) -> None:
    """Both functions over two rounds, names as text; a submission to a third round shows
    at once (the `leaderboard.changed` event the view already receives)."""
    fn = view.locator(f'table.cs-standings tr[data-function="{fingerprint(near)}"] td')
    expect(fn).to_have_text([CLAIM, "v1", CLAIM, "2", "0.000", "2"])
    alice = view.locator(f'table.cs-standings tr[data-participant="{world["alice"]}"] td')
    expect(alice).to_have_text(["alice", "2", "1.000", "0"])
    legend = view.locator(".cs-standings-chart .legendtext")
    expect(legend).to_have_text([f"{CLAIM} v1 ({CLAIM})", "guess v1 (alice)"])
    expect(view.locator(".cs-standings-chart .xtick text")).to_have_text(
        ["1. round 1", "2. round 2"]
    )
    third = world["third"]
    world["claim"].submit(third.id, near(third), function=near)
    expect(fn.nth(3)).to_have_text("3")
    expect(view.locator(".cs-standings-chart .xtick text")).to_have_count(3)
    assert view.locator("a, b, img").count() == 0


def test_page_shows_standings_across_rounds(new_server, new_page, screenshots):
    """The page lists functions and participants by mean normalised rank, and charts rank."""
    server = new_server()
    world = season(server)
    recorded = new_page()
    page = recorded.page
    page.goto(server.url + "/leaderboard")
    view = page.locator(".cs-standings-view")
    expect(view.locator("select.cs-standings-type")).to_have_value("regress")
    check_standings(view, world)
    page.screenshot(path=str(screenshots / "standings-page.png"), full_page=True)
    assert recorded.errors == []
    assert recorded.console_errors == []
    assert recorded.dialogs == []


def test_panel_shows_standings_across_rounds(lab, new_server, new_page):
    """The panel shows the same standings view, kept current by the events it receives."""
    server = new_server()
    world = season(server)
    lab.configure(server.url)
    recorded = new_page()
    panel = open_panel(lab, recorded.page)
    view = panel.locator(".cs-standings-view")
    check_standings(view, world)
    view.locator("select.cs-standings-type").select_option("classify")
    expect(view.locator(".cs-standings-note")).to_have_text("No classify rounds yet.")
    expect(view.locator("tr[data-function]")).to_have_count(0)
    assert recorded.errors == []
    assert recorded.dialogs == []
