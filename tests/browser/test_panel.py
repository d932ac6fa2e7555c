"""The JupyterLab side panel, in real Chromium against a real server and JupyterLab."""

from __future__ import annotations

import re

import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.browser.api import CLAIM, XSS, Api
from tests.browser.harness import LAB_TOKEN, PLUGIN_ID

COMMAND = "Open Crowdsource Leaderboard"
COMMAND_ID = "crowdsource:open-leaderboard"


def open_panel(lab, page):
    """Load JupyterLab and open the panel from the command palette."""
    page.goto(lab.page_url())
    page.wait_for_function(
        f"window.jupyterapp && window.jupyterapp.commands.hasCommand('{COMMAND_ID}')",
        timeout=30_000,
    )
    page.evaluate("window.jupyterapp.restored")
    palette = page.locator("#modal-command-palette")
    search = palette.locator(".lm-CommandPalette-input")
    active = palette.locator(".lm-CommandPalette-item.lm-mod-active")
    panel = page.locator(".jp-CrowdsourcePanel")
    for _ in range(5):  # while Lab settles, something may take the focus and close the palette
        try:
            if not search.is_visible():
                page.keyboard.press("Control+Shift+C")
            search.fill(COMMAND, timeout=2000)
            expect(active).to_have_attribute("data-command", COMMAND_ID, timeout=2000)
            search.press("Enter", timeout=2000)
            expect(panel).to_be_visible(timeout=2000)
            break
        except (PlaywrightTimeout, AssertionError):
            continue
    expect(panel).to_be_visible()
    return panel


def test_panel_lists_competitions_and_shows_a_new_rank_live(
    lab, board_server, people, new_page, screenshots
):
    """A submission posted through the API shows its rank within 2 s, no reload."""
    api = Api(board_server.url)
    comp = api.create_competition(people["host"], "House prices")
    api.submit(people["bob"], comp, 0.5)
    api.submit(people["carol"], comp, 0.9)
    lab.configure(board_server.url, people["alice"]["token"])
    recorded = new_page()
    page = recorded.page
    panel = open_panel(lab, page)

    row = panel.locator(f'.cs-competition[data-competition-id="{comp["id"]}"]')
    expect(row.locator(".cs-c-title")).to_have_text("House prices")
    expect(row.locator(".cs-c-type")).to_have_text("regress")
    expect(row.locator(".cs-c-status")).to_have_text("open")
    expect(row.locator(".cs-c-rank")).to_have_text("—")
    row.click()
    board = panel.locator(f'.cs-detail[data-competition-id="{comp["id"]}"]')
    expect(board.locator(".cs-board-title")).to_have_text("House prices")
    expect(board.locator("table.cs-board td.cs-name")).to_have_text(["bob", "carol"])
    expect(board.locator(".cs-chart-bar .ytick text")).to_have_count(2)
    expect(panel.locator(".cs-live")).to_have_text("● live")
    expect(board.locator(".cs-status")).to_have_text("● live")

    api.submit(people["alice"], comp, 0.2)
    alice = board.locator(f'tr[data-entry="{people["alice"]["id"]}"]')
    expect(alice.locator("td.cs-rank")).to_have_text("1")
    expect(row.locator(".cs-c-rank")).to_have_text("#1")
    expect(board.locator("td.cs-name")).to_have_text(["alice", "bob", "carol"])
    expect(alice.locator("td.cs-subs")).to_have_text("1")
    expect(alice).to_have_class(re.compile("cs-mine"))
    page.screenshot(path=str(screenshots / "panel.png"))
    assert recorded.errors == []


def test_panel_renders_server_strings_as_text(lab, new_server, new_page):
    """A title and names made of HTML show literally (table and charts) and run no script."""
    server = new_server()
    api = Api(server.url)
    host, mallory, claim = api.register("host"), api.register(XSS), api.register(CLAIM)
    comp = api.create_competition(host, XSS)
    api.submit(mallory, comp, 0.3)
    api.submit(claim, comp, 0.2)
    lab.configure(server.url)
    recorded = new_page()
    panel = open_panel(lab, recorded.page)

    expect(panel.locator(".cs-c-title")).to_have_text(XSS)
    expect(panel.locator(".cs-board-title")).to_have_text(XSS)
    expect(panel.locator("td.cs-name")).to_have_text([CLAIM, XSS])
    ticks = panel.locator(".cs-chart-bar .ytick text")  # Plotly draws them bottom up
    expect(ticks).to_have_text(["2. " + XSS, "1. " + CLAIM])
    expect(panel.locator(".cs-chart-line .legendtext")).to_have_text([CLAIM, XSS])
    live = api.create_competition(host, XSS + " (live)")
    expect(panel.locator(f'[data-competition-id="{live["id"]}"] .cs-c-title')).to_have_text(
        XSS + " (live)"
    )
    recorded.page.wait_for_timeout(300)
    assert panel.locator("img, a, b").count() == 0
    assert recorded.page.evaluate("document.querySelectorAll('img[src=x]').length") == 0
    assert recorded.dialogs == []


def test_panel_says_when_the_server_is_down_and_recovers(lab, new_server, new_page):
    """Stopping the server shows its URL; starting it again reconnects without a reload."""
    server = new_server()
    lab.configure(server.url)
    panel = open_panel(lab, new_page().page)
    notice = panel.locator(".cs-notice")
    expect(notice).to_have_text(f"No competitions on {server.url} yet.")

    server.stop()
    expect(notice).to_contain_text(f"Cannot reach the crowdsource server at {server.url}")
    expect(notice).to_have_attribute("data-state", "unreachable")
    expect(panel.locator(".cs-live")).to_have_text("○ offline")

    server.start()
    host = Api(server.url).register("host")
    Api(server.url).create_competition(host, "Back again")
    expect(panel.locator(".cs-c-title")).to_have_text("Back again", timeout=20_000)
    expect(notice).to_be_hidden()


def test_panel_says_when_the_token_is_refused(lab, board_server, new_page):
    """A wrong token in the settings names the problem and the server."""
    lab.configure(board_server.url, "not-a-real-token")
    panel = open_panel(lab, new_page().page)
    notice = panel.locator(".cs-notice")
    expect(notice).to_have_attribute("data-state", "unauthorized")
    expect(notice).to_contain_text(re.compile(f"Unauthorized: {re.escape(board_server.url)}"))


def test_panel_settings_are_in_the_settings_editor(lab):
    """The server URL and token are JupyterLab settings, with the documented default."""
    r = requests.get(
        f"{lab.url}/lab/api/settings/{PLUGIN_ID}", params={"token": LAB_TOKEN}, timeout=10
    )
    assert r.status_code == 200, r.text
    properties = r.json()["schema"]["properties"]
    assert properties["serverUrl"]["default"] == "http://127.0.0.1:8889"
    assert properties["token"]["default"] == ""
