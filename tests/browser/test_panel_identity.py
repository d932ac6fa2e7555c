"""The panel finds its server and token from `crowdsource register`, in real Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from playwright.sync_api import expect

from tests.browser.api import Api
from tests.browser.harness import ROOT, Lab
from tests.browser.test_panel import open_panel


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab of its own: its user's saved identities are this module's alone."""
    proc = Lab(tmp_path_factory.mktemp("identity-lab")).start()
    yield proc
    proc.stop()


def crowdsource_register(lab: Lab, url: str, name: str) -> dict:
    """The real `crowdsource register NAME`, run as the user who runs JupyterLab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env["CROWDSOURCE_CONFIG_DIR"] = str(lab.crowdsource_config)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "crowdsource.cli", "register", name, "--url", url, "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    return dict(json.loads(done.stdout))


def test_panel_uses_the_identity_register_saved_without_a_typed_token(
    lab, new_server, new_page, screenshots
):
    """No settings at all: the panel connects as the registered participant, token unseen."""
    server = new_server()
    api = Api(server.url)
    dana = crowdsource_register(lab, server.url, "dana")
    comp = api.create_competition(api.register("host"), "Saved identity")
    api.submit(api.register("erin"), comp, 0.5)
    api.submit(dana, comp, 0.1)
    recorded = new_page()
    page = recorded.page
    panel = open_panel(lab, page)

    expect(panel.locator(".cs-server")).to_have_text(f"{server.url} · as dana")
    row = panel.locator(f'.cs-competition[data-competition-id="{comp["id"]}"]')
    expect(row.locator(".cs-c-rank")).to_have_text("#1")
    board = panel.locator(".cs-detail")
    expect(board.locator("td.cs-name")).to_have_text(["dana", "erin"])
    expect(board.locator(".cs-mine td.cs-name")).to_have_text("dana")
    page.screenshot(path=str(screenshots / "panel-saved-identity.png"))
    assert dana["token"] not in page.content()
    assert dana["token"] not in page.evaluate("document.body.innerText")
    assert recorded.errors == []


def test_a_token_typed_in_the_settings_editor_is_a_password_field(lab, new_server, new_page):
    """For a server with no saved identity, a token typed (hidden) in Settings is used."""
    server = new_server()
    fay = Api(server.url).register("fay")
    recorded = new_page()
    page = recorded.page
    panel = open_panel(lab, page)
    page.evaluate("jupyterapp.commands.execute('settingeditor:open', {query: 'Crowdsource'})")
    page.locator(".jp-PluginList-entry", has_text="Crowdsource").first.click()
    url_field = page.locator('input[id$="plugin_serverUrl"]')
    token_field = page.locator('input[id$="plugin_token"]')
    expect(url_field).to_have_attribute("type", "text")
    expect(token_field).to_have_attribute("type", "password")

    url_field.fill(server.url)
    token_field.fill(fay["token"])
    expect(panel.locator(".cs-server")).to_have_text(f"{server.url} · as fay", timeout=20_000)
    expect(panel.locator(".cs-notice")).to_have_text(f"No competitions on {server.url} yet.")
    assert fay["token"] not in page.evaluate("document.body.innerText")
    assert recorded.errors == []
