"""The page and the panel with a 10,000-entry board, in real Chromium."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests import support
from tests.browser.api import IDS, TRUTH, Api
from tests.browser.test_panel import open_panel

# The bench helper's fast seeding (tests.support.seed_board); the test waits for it.
seed_board = getattr(support, "seed_board", None)
pytestmark = pytest.mark.skipif(seed_board is None, reason="needs tests.support.seed_board")


def predictions(error: float) -> bytes:
    """Parquet predictions off the truth by `error` (rmse == error)."""
    frame = pd.DataFrame({"id": IDS, "y": [t + error for t in TRUTH]})
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def seeded(new_server) -> tuple:
    """A server with a competition of 10,000 seeded entries (scores 1.0 to 2.0, rmse)."""
    server = new_server()
    api = Api(server.url)
    comp = api.create_competition(api.register("host"), "Ten thousand")
    server.stop()
    seed_board(db=server.db, competition_id=comp["id"], predictions=predictions(1.0))
    server.start()
    return server, api, comp


def test_a_10000_entry_board_shows_its_top_finds_names_and_stays_live(new_server, new_page):
    """The top 100 of 10,000 show; a search finds any name on the whole board; a new
    leader arrives live; no script error."""
    server, api, comp = seeded(new_server)
    recorded = new_page()
    page = recorded.page
    page.goto(f"{server.url}/leaderboard#{comp['id']}")

    board = page.locator("table.cs-board")
    expect(board.locator("tbody.cs-top tr[data-entry]")).to_have_count(100)
    expect(board.locator("tbody.cs-top td.cs-name").first).to_have_text("seeded-00000")
    expect(page.locator(".cs-more")).to_have_text("Showing the top 100 of 10,000.")

    search = page.locator("input.cs-search")
    search.fill("seeded-09999")
    found = board.locator("tbody.cs-results tr[data-entry]")
    expect(found.locator("td.cs-name")).to_have_text(["seeded-09999"])
    expect(found.locator("td.cs-rank")).to_have_text(["9999"])  # two a score: ties share a rank
    search.fill("seeded-0999")
    expect(found).to_have_count(10)
    expect(page.locator(".cs-search-note")).to_have_text("10 matching.")
    search.fill("")
    expect(board.locator("tbody.cs-top")).to_be_visible()

    leader = api.register("newcomer")
    api.submit(leader, comp, 0.5)
    expect(board.locator("tbody.cs-top td.cs-name").first).to_have_text("newcomer")
    expect(page.locator(".cs-more")).to_have_text("Showing the top 100 of 10,001.")
    expect(board.locator("tbody.cs-top tr[data-entry]")).to_have_count(100)
    assert recorded.errors == []


def test_the_panel_shows_your_place_and_neighbours_on_a_10000_entry_board(
    lab, new_server, new_page
):
    """Ranked 5,001st: the panel says so and shows the entries around yours, below the top."""
    server, api, comp = seeded(new_server)
    middle = api.register("middle")
    api.submit(middle, comp, 1.4999)  # better than 5,000 seeded entries
    lab.configure(server.url, middle["token"])
    recorded = new_page()
    panel = open_panel(lab, recorded.page)

    board = panel.locator(f'.cs-detail[data-competition-id="{comp["id"]}"]')
    expect(board.locator(".cs-you")).to_have_text("#5,001 of 10,001")
    expect(board.locator("tbody.cs-top tr[data-entry]")).to_have_count(100)
    mine = board.locator(f'tbody.cs-around tr.cs-mine[data-entry="{middle["id"]}"]')
    expect(mine.locator("td.cs-rank")).to_have_text("5001")
    expect(board.locator("tbody.cs-around tr[data-entry]")).to_have_count(11)
    row = panel.locator(f'.cs-competition[data-competition-id="{comp["id"]}"]')
    expect(row.locator(".cs-c-rank")).to_have_text("#5001")

    board.locator("input.cs-search").fill("seeded-09998")
    expect(board.locator("tbody.cs-results td.cs-name")).to_have_text(["seeded-09998"])
    assert recorded.errors == []
