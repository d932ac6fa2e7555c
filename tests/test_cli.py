"""The `crowdsource` command line, run as real subprocesses against a real server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import ServerProcess, refusing_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path: Path, sqlite_server: ServerProcess) -> dict[str, str]:
    """Environment for the CLI: the server's URL and a private credentials folder."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    values["CROWDSOURCE_URL"] = sqlite_server.url
    values["CROWDSOURCE_CONFIG_DIR"] = str(tmp_path / "config")
    values["PYTHONPATH"] = os.pathsep.join([str(ROOT), values.get("PYTHONPATH", "")])
    return values


def run(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `crowdsource ARGS` and capture its output."""
    cmd = [sys.executable, "-m", "crowdsource.cli", *args]
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def ok(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    """Run a command that must succeed; return its stdout."""
    result = run(env, *args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(env: dict[str, str], *args: str) -> str:
    """Run a command that must fail with one error line; return that line."""
    result = run(env, *args)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("crowdsource: error:")
    return result.stderr


def write_competition(folder: Path) -> tuple[Path, Path]:
    """A dataset and an answer CSV for a small classify competition."""
    ids = np.arange(1, 21)
    dataset = pd.DataFrame({"id": ids, "x": np.linspace(-1, 1, 20)})
    answer = pd.DataFrame({"id": ids, "label": (dataset["x"] > 0).astype(int)})
    dataset.to_csv(folder / "dataset.csv", index=False)
    answer.to_csv(folder / "answer.csv", index=False)
    return folder / "dataset.csv", folder / "answer.csv"


def hosted(env: dict[str, str], folder: Path) -> int:
    """Register a host in its own config folder and host a competition; return its id."""
    host_env = {**env, "CROWDSOURCE_CONFIG_DIR": str(folder / "host-config")}
    ok(host_env, "register", f"host-{uuid.uuid4().hex[:12]}")
    dataset, answer = write_competition(folder)
    args = ["host", "--dataset", str(dataset), "--answer", str(answer), "--metric", "accuracy"]
    created = json.loads(ok(host_env, *args, "--title", "CLI test", "--closes-at", "+1h", "--json"))
    return int(created["id"])


def test_help_answers(env) -> None:
    """--help lists the commands; a command's --help lists its options."""
    assert "leaderboard" in ok(env, "--help") and "CROWDSOURCE_URL" in ok(env, "--help")
    assert "--no-wait" in ok(env, "submit", "--help")


def test_serve_help_forwards_to_the_server(env) -> None:
    """`crowdsource serve --help` is the server's own help."""
    assert "--port" in ok(env, "serve", "--help")


def test_register_saves_token_for_later_commands(env, tmp_path) -> None:
    """register writes a mode-600 credentials file that whoami then uses."""
    name = f"cli-{uuid.uuid4().hex[:12]}"
    assert "token saved to" in ok(env, "register", name)
    [path] = (tmp_path / "config").rglob("*.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert name in ok(env, "whoami")
    assert json.loads(ok(env, "whoami", "--json"))["name"] == name


def test_host_list_show(env, tmp_path) -> None:
    """host from files; the competition appears in the table, the JSON and show."""
    competition_id = hosted(env, tmp_path)
    assert "CLI test" in ok(env, "competitions")
    listed = json.loads(ok(env, "--json", "competitions", "--status", "open"))
    assert competition_id in [c["id"] for c in listed]
    assert "accuracy" in ok(env, "show", str(competition_id))


def test_download_submit_leaderboard(env, tmp_path) -> None:
    """Download the template, fill it, submit CSV and Parquet, read the leaderboard."""
    competition_id = hosted(env, tmp_path)
    ok(env, "register", f"player-{uuid.uuid4().hex[:12]}")
    template = tmp_path / "template.csv"
    ok(env, "download", str(competition_id), "--template", "-o", str(template))
    dataset = tmp_path / "dataset.parquet"
    ok(env, "download", str(competition_id), "-o", str(dataset))
    frame = pd.read_csv(template)
    frame["label"] = (pd.read_parquet(dataset)["x"] > 0).astype(int)
    frame.to_csv(tmp_path / "mine.csv", index=False)
    frame.to_parquet(tmp_path / "mine.parquet", index=False)
    assert "public score 1" in ok(env, "submit", str(competition_id), str(tmp_path / "mine.csv"))
    parquet = str(tmp_path / "mine.parquet")
    sub = json.loads(ok(env, "submit", str(competition_id), parquet, "--json"))
    assert sub["state"] == "scored"
    board = json.loads(ok(env, "leaderboard", str(competition_id), "--json"))
    assert board["entries"][0]["submissions"] == 2
    assert "rank" in ok(env, "leaderboard", str(competition_id))
    assert str(competition_id) in ok(env, "submissions")


def test_invalid_submission_is_one_line_with_the_server_message(env, tmp_path) -> None:
    """A file missing ids exits 1 with the server's message."""
    competition_id = hosted(env, tmp_path)
    ok(env, "register", f"player-{uuid.uuid4().hex[:12]}")
    pd.DataFrame({"id": [1, 2], "label": [0, 1]}).to_csv(tmp_path / "short.csv", index=False)
    line = fails(env, "submit", str(competition_id), str(tmp_path / "short.csv"))
    assert "InvalidSubmission" in line and "missing" in line


def test_unreachable_server(env) -> None:
    """A server that does not answer is one line naming the URL."""
    with refusing_port() as port:
        line = fails(env, "--url", f"127.0.0.1:{port}", "competitions")
    assert "cannot reach" in line


def test_bad_token(env) -> None:
    """An unknown token is one Unauthorized line."""
    assert "Unauthorized" in fails(env, "whoami", "--token", "nope")


def test_unknown_competition(env) -> None:
    """A missing competition is one NotFound line."""
    assert "NotFound" in fails(env, "show", "987654")


def test_missing_file(env) -> None:
    """A file that does not exist is one line naming it."""
    assert "nowhere.csv" in fails(env, "submit", "1", "nowhere.csv")


def test_usage_error_exits_2(env) -> None:
    """A malformed command line is argparse's usage error."""
    assert run(env, "show", "not-a-number").returncode == 2


def test_check_before_submitting(env, tmp_path) -> None:
    """`check ID FILE` says what the server would of a file, and submits nothing."""
    competition_id = hosted(env, tmp_path)
    ok(env, "register", f"player-{uuid.uuid4().hex[:12]}")
    template = tmp_path / "template.csv"
    ok(env, "download", str(competition_id), "--template", "-o", str(template))
    pd.read_csv(template).assign(label=1).to_csv(tmp_path / "good.csv", index=False)
    pd.read_csv(template).assign(label=1).head(18).to_csv(tmp_path / "short.csv", index=False)
    assert "20 rows checked" in ok(env, "check", str(competition_id), str(tmp_path / "good.csv"))
    said = fails(env, "check", str(competition_id), str(tmp_path / "short.csv"))
    assert "InvalidSubmission: 2 ids missing (19, 20)" in said
    assert said == fails(env, "submit", str(competition_id), str(tmp_path / "short.csv"))
    assert json.loads(ok(env, "submissions", "--json")) == []
