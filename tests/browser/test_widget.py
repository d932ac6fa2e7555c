"""The notebook's leaderboard widget in real JupyterLab and Chromium: drawn from the kernel's
synced state, live, and whole again after a page reload (the board DOM of spec section 6)."""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.browser.api import Api
from tests.browser.harness import LAB_TOKEN

MARKUP = '<a href="https://x.test">claim</a><b>x</b>'


def widget_notebook(lab, server_url: str, competition_id: int, source: str = "") -> str:
    """A notebook whose one cell shows the widget (or runs `source`); its file name."""
    source = source or (
        "from crowdsource.client import Client\n"
        "from crowdsource.notebook.leaderboard import LeaderboardWidget\n"
        f"board = LeaderboardWidget({competition_id}, client=Client({server_url!r}))\n"
        "board"
    )
    cell = {"cell_type": "code", "metadata": {}, "source": source, "outputs": []}
    cell["execution_count"] = None
    notebook = {
        "cells": [cell],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    name = f"widget-{uuid.uuid4().hex[:8]}.ipynb"
    (lab.notebooks / name).write_text(json.dumps(notebook))
    return name


def open_notebook(lab, page, name: str, workspace: str) -> None:
    """Open a notebook in JupyterLab and wait for its kernel."""
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{name}?token={LAB_TOKEN}")
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell", timeout=30_000)
    page.evaluate("window.jupyterapp.restored")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=30_000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select")
    with contextlib.suppress(PlaywrightTimeout):  # a notebook never run asks which kernel
        select.click(timeout=5000)
    expect(page.locator(".jp-Dialog")).to_have_count(0)


def only_the_kernel(page, server_url: str) -> None:
    """The page cannot reach the crowdsource server: what it shows comes from the kernel.
    HTTP is blocked through the DevTools protocol, not `page.route`, which would turn the
    HTTP cache off (and so make every reload of JupyterLab download and compile it afresh)."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("Network.enable")
    devtools.send("Network.setBlockedURLs", {"urls": [f"{server_url}/*"]})
    page.route_web_socket(re.compile(r"ws://127\.0\.0\.1:\d+/api/v1/events.*"), lambda ws: None)


def test_a_reload_shows_the_current_board_from_the_kernel(
    lab, board_server, people, new_page, screenshots
):
    """Run the widget's cell; submissions made elsewhere reach it; after a reload (the
    kernel still running, nothing re-run) the current board is there again, names as text."""
    api = Api(board_server.url)
    comp = api.create_competition(people["host"], "Widget board")
    api.submit(people["bob"], comp, 0.5)
    name = widget_notebook(lab, board_server.url, comp["id"])
    workspace = f"w{uuid.uuid4().hex[:12]}"
    recorded = new_page()
    page = recorded.page
    only_the_kernel(page, board_server.url)
    open_notebook(lab, page, name, workspace)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

    table = page.locator("table.cs-board")
    bob = table.locator(f'tr[data-entry="{people["bob"]["id"]}"]')
    expect(bob.locator("td.cs-name")).to_have_text("bob", timeout=30_000)
    marked = api.register(f"{MARKUP}{uuid.uuid4().hex[:4]}")
    api.submit(marked, comp, 0.2)
    api.submit(people["alice"], comp, 0.9)
    row = table.locator(f'tr[data-entry="{marked["id"]}"]')
    expect(row.locator("td.cs-rank")).to_have_text("1", timeout=10_000)
    expect(row.locator("td.cs-name")).to_have_text(marked["name"])
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    expect(page.locator(".jp-mod-dirty")).to_have_count(0, timeout=10_000)
    api.submit(people["carol"], comp, 0.1)  # after the save: only the kernel knows it

    page.reload()
    expect(page.locator(".jp-Notebook .jp-Cell")).to_have_count(1, timeout=30_000)
    shown = time.monotonic()  # the notebook is back: from here, the widget's part
    carol = table.locator(f'tr[data-entry="{people["carol"]["id"]}"]')
    expect(carol.locator("td.cs-rank")).to_have_text("1", timeout=30_000)
    print(f"\nthe board was back {time.monotonic() - shown:.2f} s after the notebook")
    expect(table.locator("td.cs-name")).to_have_text(["carol", marked["name"], "bob", "alice"])
    expect(table.locator("td.cs-rank")).to_have_text(["1", "2", "3", "4"])
    expect(row.locator("td.cs-name a")).to_have_count(0)
    expect(page.locator(".cs-chart")).to_have_count(1)
    page.locator(".jp-NotebookPanel").screenshot(path=str(screenshots / "notebook-leaderboard.png"))
    assert recorded.errors == []
