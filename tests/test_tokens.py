"""Token format, and tokens that begin with "-" on every command line that takes one."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from crowdsource.cli import build_parser
from crowdsource.client.config import glue_option_values
from crowdsource.notebook import session
from crowdsource.notebook.magics import cmd_connect
from crowdsource.server.participants import TOKEN_PREFIX, hash_token
from crowdsource.server.storage.engine import make_engine, session_factory
from crowdsource.server.storage.tables import Participant
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
old_tokens = st.text(alphabet=URLSAFE, min_size=43, max_size=43)


def legacy_participant(server: ServerProcess) -> tuple[str, str]:
    """A participant holding a token of the old format that begins with "-" (one in 64 did),
    written into the server's database as it would have been; returns (name, token)."""
    name, token = f"legacy-{uuid.uuid4().hex[:12]}", "-" + secrets.token_urlsafe(32)[1:]
    secret = Path(server.db + ".secret").read_bytes().strip()
    engine = make_engine(f"sqlite:///{server.db}")
    with session_factory(engine).begin() as db:
        db.add(Participant(name=name, token_hash=hash_token(token, secret=secret)))
    engine.dispose()
    return name, token


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `crowdsource ARGS`; it must succeed; return its stdout."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    base["PYTHONPATH"] = str(ROOT)
    cmd = [sys.executable, "-m", "crowdsource.cli", *args]
    result = subprocess.run(
        cmd, env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_new_tokens_carry_the_prefix(sqlite_server: ServerProcess) -> None:
    """A token begins with `cs_`, so it is never read as an option and scanners can spot it."""
    token = sqlite_server.register()["token"]
    assert token.startswith(TOKEN_PREFIX) and len(token) == len(TOKEN_PREFIX) + 43


@given(token=old_tokens, before=st.booleans(), equals=st.booleans())
def test_the_cli_reads_any_token(token: str, before: bool, equals: bool) -> None:
    """`--token T` and `--token=T`, before or after the command, for every old token."""
    option = [f"--token={token}"] if equals else ["--token", token]
    argv = [*option, "users"] if before else ["users", *option]
    assert build_parser().parse_args(glue_option_values(argv)).token == token


@given(token=old_tokens, equals=st.booleans())
def test_the_connect_magic_reads_any_token(token: str, equals: bool) -> None:
    """`%crowdsource connect URL --token T` and `--token=T`, for every old token."""
    option = [f"--token={token}"] if equals else ["--token", token]
    argv = glue_option_values(["127.0.0.1:1", *option])
    assert cmd_connect.parser.parse_args(argv).token == token  # type: ignore[attr-defined]


def test_an_option_after_token_is_still_a_mistake() -> None:
    """`--token --json` forgot the token: it stays an error rather than a token '--json'."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(glue_option_values(["users", "--token", "--json"]))


@pytest.mark.parametrize("form", ["--token=", "--token "])
def test_cli_whoami_with_an_old_token_beginning_with_dash(
    sqlite_server: ServerProcess, form: str
) -> None:
    """A token issued before the prefix, beginning with "-", works in both spellings."""
    name, token = legacy_participant(sqlite_server)
    out = cli("--url", sqlite_server.url, *(form + token).split(" ", 1), "whoami", "--json")
    assert json.loads(out)["name"] == name
    out = cli("whoami", "--url", sqlite_server.url, *(form + token).split(" ", 1))
    assert name in out


def test_cli_takes_an_old_token_from_the_environment(sqlite_server: ServerProcess) -> None:
    """CROWDSOURCE_TOKEN holding a token that begins with "-"."""
    name, token = legacy_participant(sqlite_server)
    env = {"CROWDSOURCE_URL": sqlite_server.url, "CROWDSOURCE_TOKEN": token}
    assert name in cli("whoami", env=env)


def test_the_server_accepts_an_old_token(sqlite_server: ServerProcess) -> None:
    """Tokens issued before the prefix keep working."""
    name, token = legacy_participant(sqlite_server)
    r = requests.get(
        sqlite_server.url + "/api/v1/participants/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["name"] == name


@pytest.mark.parametrize("form", ["--token={}", "--token {}"])
def test_connect_magic_with_an_old_token_beginning_with_dash(
    sqlite_server: ServerProcess,
    form: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`%crowdsource connect URL --token -abc...` connects as that participant."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "crowdsource")
    name, token = legacy_participant(sqlite_server)
    try:
        text = ip.run_line_magic("crowdsource", f"connect {sqlite_server.url} {form.format(token)}")
        assert repr(text) == f"connected to {sqlite_server.url} as {name!r}"
    finally:
        session.state().client = None
