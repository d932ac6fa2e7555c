"""Identities: every participant saved per server, switching, and token rotation (the old
token refused at once, in every server process)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crowdsource.client as CC
from crowdsource.client import config
from tests.support import ServerProcess, bearer, private_server

ROOT = Path(__file__).resolve().parents[1]
URL = "http://127.0.0.1:8889"


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Keep credentials in a temporary folder; ignore the caller's environment."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    monkeypatch.delenv("CROWDSOURCE_URL", raising=False)
    return tmp_path / "config"


def unique(prefix: str) -> str:
    """A name no other test registers."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def cli(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `crowdsource ARGS` with this test's environment."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "crowdsource.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode == 0) == ok, done.stderr
    return done


# -- the file ----------------------------------------------------------------------------------


def test_a_first_format_file_is_read_and_rewritten(config_dir) -> None:
    """A file saved by an older client (one identity) reads as the current identity, and is
    rewritten in the new format, still mode 600."""
    path = config.credentials_path(URL)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": URL, "id": 7, "name": "old", "token": "cs_old"}))
    path.chmod(0o600)
    assert config.current_identity(URL) == config.Credentials(URL, "cs_old", 7, "old")
    data = json.loads(path.read_text())
    assert data["format"] == 2 and data["current"] == "old"
    assert data["identities"] == {"old": {"id": 7, "token": "cs_old"}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_second_identity_is_added_and_the_same_name_refused(config_dir) -> None:
    """Adding keeps the first identity; the same name again is refused saying what to do."""
    config.add_identity(config.Credentials(URL, "cs_a", 1, "alice"))
    config.add_identity(config.Credentials(URL, "cs_b", 2, "bob"))
    with pytest.raises(CC.IdentityExists, match="crowdsource use alice"):
        config.add_identity(config.Credentials(URL, "cs_other", 3, "alice"))
    saved = config.load_identities(URL)
    assert saved.current == "bob" and saved.identities["alice"].token == "cs_a"
    assert config.use_identity(URL, "alice").token == "cs_a"
    assert config.current_identity("127.0.0.1:8889/api/v1") == saved.identities["alice"]
    with pytest.raises(CC.UnknownIdentity, match=r"saved: alice, bob"):
        config.use_identity(URL, "carol")


FIXTURE = HealthCheck.function_scoped_fixture  # the folder is emptied per example instead
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)


@settings(max_examples=50, deadline=None, suppress_health_check=[FIXTURE])
@given(st.dictionaries(names, st.integers(1, 2**40), min_size=1, max_size=5), st.data())
def test_any_identities_round_trip(identities: dict[str, int], data: st.DataObject) -> None:
    """Whatever names and ids are saved, each reads back with its own token, and `use` picks
    any of them (the file is whole after every write)."""
    url = f"http://127.0.0.1:{data.draw(st.integers(1, 65535))}"
    config.credentials_path(url).unlink(missing_ok=True)
    for name, pid in identities.items():
        config.add_identity(config.Credentials(url, f"cs_{pid}", pid, name))
    chosen = data.draw(st.sampled_from(sorted(identities)))
    config.use_identity(url, chosen)
    saved = config.load_identities(url)
    assert {n: c.token for n, c in saved.identities.items()} == {
        n: f"cs_{p}" for n, p in identities.items()
    }
    assert config.current_identity(url) == config.Credentials(
        url, f"cs_{identities[chosen]}", identities[chosen], chosen
    )


# -- the client and the command line against a real server ------------------------------------


def test_registering_twice_keeps_both_and_use_switches(sqlite_server: ServerProcess) -> None:
    """Two registrations on one server are two saved identities; `use` switches."""
    alice, bob = unique("alice"), unique("bob")
    CC.Client(sqlite_server.url).register(alice)
    CC.Client(sqlite_server.url).register(bob)
    assert CC.Client(sqlite_server.url).me()["name"] == bob
    client = CC.Client(sqlite_server.url)
    client.use(alice)
    assert client.me()["name"] == alice
    assert CC.Client(sqlite_server.url).me()["name"] == alice
    assert [i["name"] for i in client.identities()] == [alice, bob]


def test_the_same_name_again_is_refused_before_the_server(sqlite_server: ServerProcess) -> None:
    """Registering a saved name again says how to act as it; the saved token still works."""
    name = unique("same")
    token = CC.Client(sqlite_server.url).register(name)["token"]
    with pytest.raises(CC.IdentityExists, match=f"crowdsource use {name}"):
        CC.Client(sqlite_server.url).register(name)
    assert config.current_identity(sqlite_server.url).token == token  # type: ignore[union-attr]


def test_rotating_refuses_the_old_token_and_saves_the_new(sqlite_server: ServerProcess) -> None:
    """After `rotate_token`, the old token is 401 and the saved one is the new one."""
    client = CC.Client(sqlite_server.url)
    old = client.register(unique("rot"))["token"]
    client.me()  # the old token is now in the server's cache
    new = client.rotate_token()["token"]
    assert new != old
    answer = requests.get(f"{sqlite_server.url}/api/v1/participants/me", headers=bearer(old))
    assert answer.status_code == 401 and answer.json()["error"] == "unauthorized"
    assert CC.Client(sqlite_server.url).me()["name"] == client.participant["name"]  # type: ignore[index]
    assert config.current_identity(sqlite_server.url).token == new  # type: ignore[union-attr]


def test_cli_whoami_use_and_token_rotate(sqlite_server: ServerProcess, config_dir) -> None:
    """The command line: register two, whoami lists both, use switches, token rotate saves."""
    url = ["--url", sqlite_server.url]
    first, second = unique("cli-a"), unique("cli-b")
    cli("register", first, *url)
    cli("register", second, *url)
    assert f"also saved: {first}" in cli("whoami", *url).stdout
    again = cli("register", first, *url, ok=False)
    assert f"`crowdsource use {first}`" in again.stderr and "Traceback" not in again.stderr
    cli("use", first, *url)
    assert json.loads(cli("whoami", "--json", *url).stdout)["name"] == first
    old = config.current_identity(sqlite_server.url).token  # type: ignore[union-attr]
    assert "no longer works" in cli("token", "rotate", *url).stdout
    assert cli("whoami", "--token", old, *url, ok=False).returncode == 1
    assert first in cli("whoami", *url).stdout
    unknown = cli("use", "nobody", *url, ok=False)
    assert "crowdsource register nobody" in unknown.stderr


# -- every server process -----------------------------------------------------------------------


def handshake(server: ServerProcess, token: str) -> tuple[str, int]:
    """Open an event stream with `token`: (the serving process, HTTP status)."""
    url = server.url.replace("http", "ws", 1) + "/api/v1/events"
    try:
        ws = websocket.create_connection(url, timeout=30, header=[f"Authorization: Bearer {token}"])
    except websocket.WebSocketBadStatusException as exc:
        return str(exc.resp_headers.get("x-crowdsource-process")), exc.status_code
    process = ws.getheaders()["x-crowdsource-process"]
    ws.close()
    return process, 101


def statuses_on_every_process(server: ServerProcess, token: str, processes: int) -> dict:
    """The status each serving process answers `token` with (a new connection each time, until
    every process has answered)."""
    seen: dict[str, int] = {}
    for _ in range(300):
        process, status = handshake(server, token)
        seen[process] = status
        if len(seen) == processes:
            break
    assert len(seen) == processes, seen
    return seen


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_rotated_token_fails_in_every_process(kind: str, tmp_path: Path) -> None:
    """Both processes of a --processes=2 server have the old token cached; after a rotation
    through either of them, neither accepts it (the bus tells the other process)."""
    with private_server(kind, tmp_path, "--processes=2") as server:
        participant = server.register(unique("multi"))
        old = participant["token"]
        assert set(statuses_on_every_process(server, old, 2).values()) == {101}
        answer = requests.post(
            f"{server.url}/api/v1/participants/me/token", headers=bearer(old), timeout=30
        )
        assert answer.status_code == 200
        new = answer.json()["token"]
        deadline = time.monotonic() + 10  # the other process hears of it over the bus
        while set(statuses_on_every_process(server, old, 2).values()) != {401}:
            assert time.monotonic() < deadline, "a process still accepts the old token"
            time.sleep(0.05)
        assert set(statuses_on_every_process(server, new, 2).values()) == {101}
