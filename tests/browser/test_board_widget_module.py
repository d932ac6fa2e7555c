"""The notebook widget's ES module (crowdsource/static/widget.js) in real Chromium, driven by
a stand-in for anywidget's model: it renders from the traitlets at once, follows their
changes, and follows the server's event stream itself when it can reach it."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.browser.api import CLAIM, Api
from tests.support import refusing_port

MOUNT = """async ([state]) => {
  const widget = (await import('/static/widget.js')).default;
  const handlers = {};
  const model = {
    get: name => state[name],
    on: (event, cb) => (handlers[event] ??= []).push(cb),
    off: (event, cb) => { handlers[event] = (handlers[event] || []).filter(h => h !== cb); },
    set: () => { throw new Error('the widget must never write traitlets'); },
    save_changes: () => { throw new Error('the widget must never write traitlets'); },
  };
  window.setTrait = (name, value) => {
    state[name] = value;
    (handlers['change:' + name] || []).forEach(cb => cb());
  };
  const el = document.createElement('div');
  el.id = 'widget';
  document.body.replaceChildren(el);
  widget.render({ model, el });
}"""


def entry(pid: int, rank: int, name: str, score: float) -> dict:
    """A board entry as the kernel's traitlet holds it."""
    participant = {"id": pid, "name": name}
    return {
        "rank": rank,
        "name": name,
        "participant": participant,
        "team": None,
        "score": score,
        "submissions": 1,
        "last_submission_at": "2026-12-01T09:00:00Z",
    }


def traits(server_url: str, cid: int, entries: list[dict]) -> dict:
    """The widget's synced traitlets (spec section 5)."""
    board = {
        "version": 3,
        "total": len(entries),
        "limit": 100,
        "title": "Kernel's board",
        "metric": "rmse",
        "higher_is_better": False,
        "entries": entries,
    }
    history = [
        {
            "at": "2026-12-01T09:00:00Z",
            "participant_id": e["participant"]["id"],
            "name": e["name"],
            "score": e["score"],
        }
        for e in entries
    ]
    return {
        "server_url": server_url,
        "competition_id": cid,
        "competition": {"id": cid},
        "board": board,
        "history": history,
        "me": 2,
        "status": "live",
    }


def mount(page, server_url: str, state: dict) -> None:
    """Load the module from the server (same origin) and render it with `state`."""
    page.goto(server_url + "/static/leaderboard.css")  # any same-origin page without a CSP
    page.evaluate(MOUNT, [state])


def test_the_widget_renders_the_traitlets_at_once_and_follows_their_changes(board_server, new_page):
    """No reachable server: the kernel's board shows (names as text), then its changes."""
    recorded = new_page()
    page = recorded.page
    with refusing_port() as port:
        state = traits(
            f"http://127.0.0.1:{port}", 1, [entry(1, 1, CLAIM, 0.1), entry(2, 2, "me", 0.2)]
        )
        mount(page, board_server.url, state)
        widget = page.locator("#widget")
        expect(widget.locator("table.cs-board td.cs-name")).to_have_text([CLAIM, "me"])
        expect(widget.locator('tr.cs-mine[data-entry="2"] td.cs-rank')).to_have_text("2")
        expect(widget.locator(".cs-you")).to_have_text("#2 of 2")
        expect(widget.locator(".cs-status")).to_have_text("live")
        ticks = widget.locator(".cs-chart-bar .ytick text")  # Plotly draws them bottom up
        expect(ticks).to_have_text(["2. me", "1. " + CLAIM])
        expect(widget.locator(".cs-chart-line .legendtext")).to_have_text([CLAIM, "me"])
        assert widget.locator("a, b").count() == 0

        board = dict(
            state["board"],
            version=4,
            total=3,
            entries=[
                entry(3, 1, "newcomer", 0.05),
                entry(1, 2, CLAIM, 0.1),
                entry(2, None, "me", None),
            ],
        )
        page.evaluate("([b]) => setTrait('board', b)", [board])
        expect(widget.locator("td.cs-name")).to_have_text(["newcomer", CLAIM, "me"])
        expect(widget.locator('tr[data-entry="2"] td.cs-rank')).to_have_text("—")
        page.evaluate("() => setTrait('status', 'reconnecting in 2 s')")
        expect(widget.locator(".cs-status")).to_have_text("reconnecting in 2 s")
    assert recorded.errors == []


def test_the_widget_follows_a_reachable_server_itself(board_server, people, new_page):
    """With the server reachable, a submission shows in the widget with no traitlet change."""
    api = Api(board_server.url)
    comp = api.create_competition(people["host"], "Widget live")
    api.submit(people["bob"], comp, 0.5)
    recorded = new_page()
    page = recorded.page
    stale = traits(board_server.url, comp["id"], [entry(people["bob"]["id"], 1, "bob", 0.5)])
    mount(page, board_server.url, stale)
    widget = page.locator("#widget")
    expect(widget.locator("td.cs-name")).to_have_text(["bob"])

    api.submit(people["carol"], comp, 0.1)
    expect(widget.locator("td.cs-name")).to_have_text(["carol", "bob"])
    expect(widget.locator(".cs-status")).to_have_text("● live")
    assert json.dumps(stale["board"]["entries"]).count("carol") == 0  # not from the kernel
    assert recorded.errors == []
