"""The server's live leaderboard page, in real Chromium."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.api import CLAIM, XSS, Api


def board_of(page, comp: dict):
    """The page's detail of one competition (selected through the URL's `#id`)."""
    return page.locator(f'.cs-detail[data-competition-id="{comp["id"]}"]')


def test_page_shows_boards_and_a_new_rank_live(board_server, people, new_page, screenshots):
    """A submission posted through the API shows on the page (a delta), no reload."""
    api = Api(board_server.url)
    first = api.create_competition(people["host"], "Iris petals")
    for who, error in (("carol", 0.4), ("bob", 0.25), ("alice", 0.6), ("bob", 0.3)):
        api.submit(people[who], first, error)
    comp = api.create_competition(people["host"], "Energy demand")
    api.submit(people["bob"], comp, 0.5)
    api.submit(people["carol"], comp, 0.7)
    recorded = new_page()
    page = recorded.page
    page.goto(f"{board_server.url}/leaderboard#{comp['id']}")

    detail = board_of(page, comp)
    expect(detail.locator("h2.cs-board-title")).to_have_text("Energy demand")
    expect(detail.locator("table.cs-board .cs-name")).to_have_text(["bob", "carol"])
    expect(detail.locator(".cs-chart .main-svg").first).to_be_visible()
    expect(page.locator(".cs-live")).to_have_text("● live")
    expect(detail.locator(".cs-status")).to_have_text("● live")

    api.submit(people["alice"], comp, 0.1)
    expect(detail.locator(".cs-name")).to_have_text(["alice", "bob", "carol"])
    alice = detail.locator(f'tr[data-entry="{people["alice"]["id"]}"]')
    expect(alice.locator("td.cs-rank")).to_have_text("1")
    expect(detail.locator(".cs-chart-bar .ytick text")).to_have_count(3)

    page.locator(f'.cs-competition[data-competition-id="{first["id"]}"]').click()
    expect(board_of(page, first).locator(".cs-name")).to_have_text(["bob", "carol", "alice"])
    page.screenshot(path=str(screenshots / "leaderboard-page.png"), full_page=True)
    assert recorded.errors == []
    assert recorded.console_errors == []  # no CSP violation, no failed request


def test_page_renders_server_strings_as_text(new_server, new_page):
    """A title and names made of HTML show literally (table and charts); no script runs."""
    server = new_server()
    api = Api(server.url)
    host, mallory, claim = api.register("host"), api.register(XSS), api.register(CLAIM)
    comp = api.create_competition(host, XSS)
    api.submit(mallory, comp, 0.3)
    api.submit(claim, comp, 0.2)
    recorded = new_page()
    page = recorded.page
    page.goto(server.url + "/leaderboard.html")

    detail = board_of(page, comp)
    expect(detail.locator("h2")).to_have_text(XSS)
    expect(detail.locator(".cs-name")).to_have_text([CLAIM, XSS])
    ticks = detail.locator(".cs-chart-bar .ytick text")  # Plotly draws them bottom up
    expect(ticks).to_have_text(["2. " + XSS, "1. " + CLAIM])
    expect(detail.locator(".cs-chart-line .legendtext")).to_have_text([CLAIM, XSS])
    live = api.create_competition(host, XSS + " (live)")
    item = page.locator(f'.cs-competition[data-competition-id="{live["id"]}"] .cs-c-title')
    expect(item).to_have_text(XSS + " (live)")
    assert page.locator("img, a, b, .cs-chart a").count() == 0
    assert recorded.dialogs == []
    assert recorded.errors == []


def test_page_and_plotly_are_served_offline(board_server):
    """The page, its script and plotly.js come from the server itself."""
    page = requests.get(board_server.url + "/leaderboard", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert 'src="static/leaderboard.js"' in page.text
    assert "cdn" not in page.text.lower()
    plotly = requests.get(board_server.url + "/static/plotly.min.js", timeout=10)
    assert plotly.status_code == 200
    assert len(plotly.content) > 1_000_000
    script = requests.get(board_server.url + "/static/leaderboard.js", timeout=10)
    assert script.status_code == 200
    assert "innerHTML" not in script.text
    assert "static/plotly.min.js" in script.text  # loaded by the script, after the table
    outside = requests.get(board_server.url + "/static/..%2fserver%2fapp.py", timeout=10)
    assert outside.status_code in (403, 404)


def test_page_says_when_the_server_is_down_and_recovers(new_server, new_page):
    """The page names the lost server, reconnects by itself and resyncs."""
    server = new_server()
    page = new_page().page
    page.goto(server.url + "/leaderboard")
    notice = page.locator(".cs-notice")
    expect(notice).to_have_attribute("data-state", "empty")

    server.stop()
    expect(notice).to_contain_text(f"Cannot reach the crowdsource server at {server.url}")
    expect(page.locator(".cs-live")).to_have_text("○ offline")

    server.start()
    api = Api(server.url)
    api.create_competition(api.register("host"), "Back again")
    expect(page.locator(".cs-board-title")).to_have_text("Back again", timeout=20_000)
    expect(notice).to_be_hidden()
