"""The Jupyter Server extension that hands the panel its saved identity, in a real JupyterLab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from crowdsource.client.config import Credentials, add_identity, mark_used
from crowdsource.jupyter_server_extension import saved_identity
from tests.browser.harness import LAB_TOKEN, Lab
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A real JupyterLab with the extension enabled by the shipped config file."""
    proc = Lab(tmp_path_factory.mktemp("identity-lab")).start()
    yield proc
    proc.stop()


def crowdsource(lab: Lab, server: ServerProcess, *args: str) -> dict:
    """`crowdsource ARGS --json`, as the user who runs JupyterLab."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env["CROWDSOURCE_CONFIG_DIR"] = str(lab.crowdsource_config)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "crowdsource.cli", *args, "--url", server.url]
    result = subprocess.run(
        [*cmd, "--json"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(result.stdout))


def identity(lab: Lab, token: str | None = LAB_TOKEN, **params: str) -> requests.Response:
    """GET /crowdsource/identity, with Jupyter's token unless told otherwise."""
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(f"{lab.url}/crowdsource/identity", headers=headers, params=params)


def test_a_request_without_jupyters_token_is_refused(lab: Lab) -> None:
    assert identity(lab, token=None).status_code == 403
    assert identity(lab, token="not-the-lab-token").status_code == 403


def test_the_identity_saved_by_register_is_answered(lab: Lab, sqlite_server: ServerProcess) -> None:
    shutil.rmtree(lab.crowdsource_config, ignore_errors=True)
    assert identity(lab).json() == {"identity": None}

    alice = crowdsource(lab, sqlite_server, "register", "panel-alice")

    response = identity(lab)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["identity"] == {
        "url": sqlite_server.url,
        "id": alice["id"],
        "name": "panel-alice",
        "token": alice["token"],
    }
    assert identity(lab, url=sqlite_server.url + "/api/v1").json()["identity"]["name"] == (
        "panel-alice"
    )
    assert identity(lab, url="http://127.0.0.1:1").json() == {"identity": None}


def test_the_current_identity_follows_register_and_use(
    lab: Lab, sqlite_server: ServerProcess
) -> None:
    alice = crowdsource(lab, sqlite_server, "register", "panel-ann")
    bob = crowdsource(lab, sqlite_server, "register", "panel-ben")
    assert identity(lab).json()["identity"]["token"] == bob["token"]

    crowdsource(lab, sqlite_server, "use", "panel-ann")
    assert identity(lab).json()["identity"]["token"] == alice["token"]


def test_a_bad_url_is_a_400_that_says_what_to_send(lab: Lab) -> None:
    response = identity(lab, url="ftp://nowhere")
    assert response.status_code == 400
    assert "send ?url=http://host:port" in response.json()["message"]


def test_the_server_used_last_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path))
    assert saved_identity() is None
    for port, stamp in ((8001, 100), (8003, 300), (8002, 200)):
        path = add_identity(Credentials(f"http://127.0.0.1:{port}", f"t{port}", port, "x"))
        os.utime(path, (stamp, stamp))
    (tmp_path / "servers" / "broken.json").write_text("{not json")
    (tmp_path / "servers" / "bad-url.json").write_text('{"url": "ftp://x"}')
    assert saved_identity() == Credentials("http://127.0.0.1:8003", "t8003", 8003, "x")
    assert saved_identity(url="127.0.0.1:8002").token == "t8002"  # type: ignore[union-attr]

    mark_used("http://127.0.0.1:8001")  # what `%crowdsource connect` does
    assert saved_identity() == Credentials("http://127.0.0.1:8001", "t8001", 8001, "x")


def test_connect_makes_its_server_the_one_the_panel_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_server: ServerProcess, new_server
) -> None:
    from crowdsource.client import Client
    from crowdsource.notebook import session

    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    other = new_server()
    Client(sqlite_server.url).register("panel-first")
    Client(other.url).register("panel-second")
    assert saved_identity().url == other.url  # type: ignore[union-attr]

    state = session.state()
    monkeypatch.setattr(state, "client", state.client)  # the notebook's connection, restored
    session.connect(sqlite_server.url)
    assert saved_identity().name == "panel-first"  # type: ignore[union-attr]
