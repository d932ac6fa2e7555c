"""A host's edits reach the page and the panel live: `competition.updated` (title, close
time) and `competition.deleted` (gone from the list), in real Chromium, no reload."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.browser.api import CLAIM, Api
from tests.browser.test_panel import open_panel


def edit(url: str, host: dict, comp: dict, **body: object) -> None:
    """PATCH a competition as its host."""
    r = requests.patch(
        f"{url}/api/v1/competitions/{comp['id']}",
        json=body,
        headers={"Authorization": f"Bearer {host['token']}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text


def delete(url: str, host: dict, comp: dict) -> dict:
    """DELETE a competition as its host (archived if anyone submitted)."""
    r = requests.delete(
        f"{url}/api/v1/competitions/{comp['id']}",
        headers={"Authorization": f"Bearer {host['token']}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def follow_edits(root, url: str, api: Api, host: dict, kept: dict, gone: dict) -> None:
    """Rename and reschedule `kept` (shown selected), delete `gone`, then archive `kept`."""
    item = root.locator(f'.cs-competition[data-competition-id="{kept["id"]}"]')
    expect(item.locator(".cs-c-title")).to_have_text("Before")
    expect(root.locator(f'.cs-competition[data-competition-id="{gone["id"]}"]')).to_have_count(1)

    edit(url, host, kept, title=CLAIM, closes_at="2030-01-02T03:04:00Z")
    expect(item.locator(".cs-c-title")).to_have_text(CLAIM)
    expect(item.locator(".cs-c-closes")).to_contain_text("2030")
    expect(root.locator(".cs-board-title")).to_have_text(CLAIM)

    assert delete(url, host, gone)["deleted"] is True
    expect(root.locator(f'.cs-competition[data-competition-id="{gone["id"]}"]')).to_have_count(0)
    assert delete(url, host, kept)["archived"] is True  # it had a submission
    expect(root.locator(".cs-competition")).to_have_count(0)
    expect(root.locator(".cs-detail")).to_be_empty()
    assert root.locator("a, b").count() == 0


def test_page_follows_a_hosts_edits_and_deletions(new_server, new_page):
    """Title and close time change in place; deleted and archived competitions leave."""
    server = new_server()
    api = Api(server.url)
    host = api.register("host")
    kept = api.create_competition(host, "Before")
    api.submit(api.register("alice"), kept, 0.5)
    gone = api.create_competition(host, "Short-lived")
    recorded = new_page()
    page = recorded.page
    page.goto(f"{server.url}/leaderboard#{kept['id']}")
    expect(page.locator(".cs-live")).to_have_text("● live")
    follow_edits(page, server.url, api, host, kept, gone)
    expect(page.locator(".cs-notice")).to_have_attribute("data-state", "empty")
    assert recorded.errors == []


def test_panel_follows_a_hosts_edits_and_deletions(lab, new_server, new_page):
    """The panel keeps the same list current from the same events."""
    server = new_server()
    api = Api(server.url)
    host = api.register("host")
    gone = api.create_competition(host, "Short-lived")
    kept = api.create_competition(host, "Before")  # the newest: selected first
    api.submit(api.register("alice"), kept, 0.5)
    lab.configure(server.url)
    recorded = new_page()
    panel = open_panel(lab, recorded.page)
    expect(panel.locator(".cs-live")).to_have_text("● live")
    follow_edits(panel, server.url, api, host, kept, gone)
    assert recorded.errors == []
