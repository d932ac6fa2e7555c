"""The `crowdsource` command line, run as real subprocesses against a real server."""

from __future__ import annotations

import json
import os
import re
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


# -- faults a new user meets ------------------------------------------------------------------


def test_a_malformed_csv_names_the_file_and_the_line(env, tmp_path) -> None:
    """A CSV with a ragged row: one line naming the file and the line, no parser internals."""
    bad = tmp_path / "ragged.csv"
    bad.write_text("id\n1\n2\n3,4,5,6\n")
    line = fails(env, "submit", "1", str(bad))
    assert str(bad) in line and "line 4 has 4 fields but the header row has 1" in line
    assert "tokenizing" not in line and "C error" not in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "empty"),
        (b"PAR1 not really parquet", "not a readable CSV or Parquet file"),
        (b"id,label\n1,\xff\xfe\n", "not UTF-8"),
    ],
)
def test_every_unreadable_file_is_one_line_naming_it(env, tmp_path, content, says) -> None:
    """Empty, damaged Parquet, not UTF-8: each one line naming the file and the fault."""
    path = tmp_path / "predictions.csv"
    path.write_bytes(content)
    line = fails(env, "submit", "1", str(path))
    assert str(path) in line and says in line


def test_json_makes_errors_json_on_stderr(env, tmp_path) -> None:
    """With --json an error is one JSON object on stderr and the exit status is 1; a usage
    error is JSON too, with status 2."""
    result = run(env, "--json", "show", "987654")
    assert result.returncode == 1 and result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "not_found" and error["status"] == 404
    assert "`crowdsource competitions` lists them" in error["message"]
    missing = run(env, "submit", "1", str(tmp_path / "nowhere.csv"), "--json")
    assert missing.returncode == 1
    assert "nowhere.csv" in json.loads(missing.stderr)["error"]["message"]
    usage = run(env, "show", "not-a-number", "--json")
    assert usage.returncode == 2 and json.loads(usage.stderr)["error"]["code"] == "usage"


def test_a_wrong_competition_id_points_to_the_command(env) -> None:
    """No API URL in the message: the command that lists competitions."""
    line = fails(env, "leaderboard", "987654")
    assert "no competition 987654; `crowdsource competitions` lists them" in line
    assert "/api/v1" not in line


def test_a_reader_that_leaves_ends_the_command_quietly(env) -> None:
    """`crowdsource users | head -1`: the pipe closes before the table is written; no
    traceback, the exit status a shell gives a tool stopped by SIGPIPE."""
    ok(env, "register", f"pipe-{uuid.uuid4().hex[:12]}")
    cmd = [sys.executable, "-m", "crowdsource.cli", "users"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes
    stderr = proc.stderr.read().decode()
    assert proc.wait(60) == 141 and stderr == ""
    shell = subprocess.run(
        f"'{sys.executable}' -m crowdsource.cli users | head -1",
        shell=True,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shell.returncode == 0 and shell.stderr == "" and "name" in shell.stdout


def test_times_print_to_the_second(env, tmp_path) -> None:
    """Tables and `show` print times as `2026-12-01 09:30:05`, JSON keeps ISO."""
    competition_id = hosted(env, tmp_path)
    ok(env, "register", f"times-{uuid.uuid4().hex[:12]}")
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"
    for text in (ok(env, "users"), ok(env, "show", str(competition_id))):
        assert re.search(stamp, text) and not re.search(r":\d\d\.\d{6}", text)
        assert "+00:00" not in text
    assert "T" in json.loads(ok(env, "users", "--json"))[0]["created_at"]


def test_submissions_show_the_private_score_after_close(env, tmp_path) -> None:
    """Half the rows private: once the host closes, `submissions` has a private_score."""
    host_env = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "host-config")}
    ok(host_env, "register", f"host-{uuid.uuid4().hex[:12]}")
    dataset, answer = write_competition(tmp_path)
    created = ok(
        host_env,
        *("host", "--dataset", str(dataset), "--answer", str(answer), "--metric", "accuracy"),
        *("--public-fraction", "0.5", "--json"),
    )
    competition_id = str(json.loads(created)["id"])
    ok(env, "register", f"late-{uuid.uuid4().hex[:12]}")
    pd.read_csv(answer).to_csv(tmp_path / "mine.csv", index=False)
    ok(env, "submit", competition_id, str(tmp_path / "mine.csv"))
    assert "private_score" not in ok(env, "submissions", "--competition", competition_id)
    ok(host_env, "close", competition_id)
    table = ok(env, "submissions", "--competition", competition_id)
    assert "private_score" in table.splitlines()[0]
    assert json.loads(ok(env, "submissions", "--json"))[0]["private_score"] == 1.0


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
