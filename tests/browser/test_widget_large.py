"""The notebook widget with a 10,000-entry board in a real kernel (issue 12)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_large_board import pytestmark as pytestmark  # needs seed_board
from tests.browser.test_large_board import seeded
from tests.browser.test_widget import MARKUP, open_notebook, widget_notebook
from tests.test_widget_kernel import Kernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A fresh kernel whose crowdsource config is empty."""
    env = dict(os.environ, CROWDSOURCE_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("CROWDSOURCE_TOKEN", None)
    proc = Kernel(env)
    yield proc
    proc.stop()


def test_the_widget_state_holds_the_top_100_of_a_10001_entry_board(
    kernel: Kernel, new_server: Any
) -> None:
    """Seeded 10,000 plus one newcomer: the synced `board` holds the top 100 and the total."""
    server, api, comp = seeded(new_server)
    api.submit(api.register("newcomer"), comp, 0.5)
    kernel.run(f"%load_ext crowdsource\n%crowdsource connect {server.url}")
    kernel.run(f"w = %crowdsource leaderboard {comp['id']}")

    (printed,) = kernel.run(
        "import time\n"
        "for _ in range(300):\n"
        "    if w.board.get('total') == 10_001: break\n"
        "    time.sleep(0.1)\n"
        "print(w.board['total'], len(w.board['entries']), w.board['entries'][0]['name'])"
    )
    assert printed["content"]["text"].split() == ["10001", "100", "newcomer"]


def test_the_widget_shows_the_top_of_a_10000_entry_board_and_a_new_leader_live(
    lab, new_server: Any, new_page: Any
) -> None:
    """`%crowdsource leaderboard ID` in JupyterLab: the top 100 rows, then a new leader
    (named with markup, shown as text) arrives live at rank 1."""
    server, api, comp = seeded(new_server)
    magic = f"%load_ext crowdsource\n%crowdsource connect {server.url}\n"
    magic += f"%crowdsource leaderboard {comp['id']}"
    name = widget_notebook(lab, server.url, comp["id"], source=magic)
    recorded = new_page()
    page = recorded.page
    open_notebook(lab, page, name, f"w{uuid.uuid4().hex[:12]}")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    table = page.locator("table.cs-board")
    expect(table.locator("tr[data-entry]").first).to_be_visible(timeout=60_000)
    expect(table.locator("tbody.cs-top tr[data-entry]")).to_have_count(100, timeout=30_000)
    expect(page.get_by_text("10,000").first).to_be_visible()
    leader = api.register(f"{MARKUP}{uuid.uuid4().hex[:4]}")
    api.submit(leader, comp, 0.5)
    row = table.locator(f'tr[data-entry="{leader["id"]}"]')
    expect(row.locator("td.cs-rank")).to_have_text("1", timeout=30_000)
    expect(row.locator("td.cs-name")).to_have_text(leader["name"])
    expect(row.locator("td.cs-name a")).to_have_count(0)
    expect(table.locator("tbody.cs-top tr[data-entry]")).to_have_count(100)
    assert recorded.errors == []


def test_the_widget_shows_your_place_and_neighbours_below_the_top(
    lab, new_server: Any, new_page: Any
) -> None:
    """The kernel connected as the 5,001st of 10,001: the widget says so and shows the
    entries around its own, below the top 100."""
    server, api, comp = seeded(new_server)
    middle = api.register("middle")
    api.submit(middle, comp, 1.4999)  # better than 5,000 seeded entries
    magic = f"%load_ext crowdsource\n%crowdsource connect {server.url} --token {middle['token']}\n"
    magic += f"%crowdsource leaderboard {comp['id']}"
    name = widget_notebook(lab, server.url, comp["id"], source=magic)
    recorded = new_page()
    page = recorded.page
    open_notebook(lab, page, name, f"w{uuid.uuid4().hex[:12]}")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    widget = page.locator(".cs-widget")
    expect(widget.locator(".cs-you")).to_have_text("#5,001 of 10,001", timeout=60_000)
    expect(widget.locator("tbody.cs-top tr[data-entry]")).to_have_count(100)
    mine = widget.locator(f'tbody.cs-around tr.cs-mine[data-entry="{middle["id"]}"]')
    expect(mine.locator("td.cs-rank")).to_have_text("5001", timeout=30_000)
    expect(widget.locator("tbody.cs-around tr[data-entry]")).to_have_count(11)
    assert recorded.errors == []
