"""The page and the panel apply live-board frames (snapshot, deltas, a version gap's resync,
a close for falling behind) from a scripted server, in real Chromium."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.scripted import ScriptedServer, entry
from tests.browser.test_panel import open_panel

ALICE, BOB, CAROL, DAVE, ERIN = (
    entry(1, 1, "alice", 0.1),
    entry(2, 2, "bob", 0.2),
    entry(3, 1, "carol", 0.05),
    entry(4, 1, "dave", 0.01),
    entry(5, 1, "erin", 0.001),
)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted server with alice and bob on the board at version 5."""
    server = ScriptedServer()
    server.set_board(5, [ALICE, BOB])
    yield server
    server.stop()


def follow_the_script(server: ScriptedServer, names) -> None:
    """Deltas apply; a gap makes the view ask for a snapshot and show it; a close with 4000
    makes it reconnect and show the new snapshot."""
    expect(names).to_have_text(["alice", "bob"])

    moved = [CAROL, dict(ALICE, rank=2), dict(BOB, rank=3)]
    server.push({"board": "public", "version": 6, "previous": 5, "total": 3,
                 "entries": moved, "removed": []})  # fmt: skip
    expect(names).to_have_text(["carol", "alice", "bob"])

    server.push({"board": "public", "version": 7, "previous": 6, "total": 2,
                 "entries": [], "removed": [2]})  # fmt: skip
    expect(names).to_have_text(["carol", "alice"])

    server.set_board(9, [DAVE, dict(CAROL, rank=2)])
    server.push({"board": "public", "version": 9, "previous": 8, "total": 2,
                 "entries": [DAVE], "removed": []})  # fmt: skip
    expect(names).to_have_text(["dave", "carol"])  # from the snapshot it asked for
    assert server.received == [{"type": "snapshot"}]

    server.set_board(1, [ERIN, dict(DAVE, rank=2)])
    server.close_all(4000)
    expect(names).to_have_text(["erin", "dave"])  # reconnected: hello, then a snapshot


def test_the_page_applies_deltas_resyncs_and_reconnects(scripted, new_page):
    """The /leaderboard page follows the scripted board frame by frame."""
    recorded = new_page()
    recorded.page.goto(scripted.url + "/leaderboard#1")
    follow_the_script(scripted, recorded.page.locator("table.cs-board tbody.cs-top td.cs-name"))
    assert recorded.errors == []


def test_the_panel_applies_deltas_resyncs_and_reconnects(scripted, lab, new_page):
    """The JupyterLab panel follows the scripted board frame by frame."""
    lab.configure(scripted.url)
    recorded = new_page()
    panel = open_panel(lab, recorded.page)
    follow_the_script(scripted, panel.locator("table.cs-board tbody.cs-top td.cs-name"))
    assert recorded.errors == []
