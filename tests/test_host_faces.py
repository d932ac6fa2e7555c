"""Final submissions and the host's tools through the command line (real subprocesses) and
the notebook magic (a real IPython shell), against a real server."""

# The fixtures of tests/test_cli.py and tests/test_magics.py are imported to be used here;
# pytest passes them as the same-named parameters.
# ruff: noqa: F401, F811

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pandas as pd
from IPython.core.interactiveshell import InteractiveShell

from crowdsource.notebook import session
from tests.test_cli import env, fails, hosted, ok
from tests.test_magics import cs, shell, unique, usage_error
from tests.test_magics import hosted as notebook_hosted


def player(env: dict[str, str], folder: Path, competition_id: int) -> tuple[dict[str, str], list]:
    """A participant in a config folder of their own, with two submissions (one right)."""
    mine = {**env, "CROWDSOURCE_CONFIG_DIR": str(folder / f"config-{uuid.uuid4().hex[:6]}")}
    ok(mine, "register", f"player-{uuid.uuid4().hex[:12]}")
    template = folder / "template.csv"
    ok(mine, "download", str(competition_id), "--template", "-o", str(template))
    frame = pd.read_csv(template)
    ids = []
    for right in (True, False):
        frame["label"] = ((frame["id"] > 10) == right).astype(int)
        frame.to_csv(folder / "mine.csv", index=False)
        sub = json.loads(
            ok(mine, "submit", str(competition_id), str(folder / "mine.csv"), "--json")
        )
        ids.append(sub["id"])
    return mine, ids


def test_cli_final_and_host_tools(env, tmp_path) -> None:
    """final, received, leaderboard --csv, edit, reopen, disqualify and delete."""
    cid = hosted(env, tmp_path)
    host = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "host-config")}
    mine, (good, bad) = player(env, tmp_path, cid)
    assert f"final submissions {good}, {bad} (your best public" in ok(mine, "final", str(cid))
    assert f"final submissions {bad} (selected" in ok(mine, "final", str(cid), str(bad))
    assert "named once" in fails(mine, "final", str(cid), str(good), str(bad), str(good))
    received = json.loads(ok(host, "received", str(cid), "--json"))
    assert sorted(s["id"] for s in received) == sorted([good, bad])
    assert [s["id"] for s in json.loads(ok(mine, "received", str(cid), "--json"))] == [bad, good]
    csv = pd.read_csv(io.StringIO(ok(host, "leaderboard", str(cid), "--csv")))
    assert csv["score"].tolist() == [1.0]
    assert "Renamed" in ok(host, "edit", str(cid), "--title", "Renamed", "--daily-limit", "5")
    assert "only the host" in fails(mine, "edit", str(cid), "--title", "Mine")
    ok(host, "close", str(cid))
    assert "can no longer change" in fails(mine, "final", str(cid), str(good))
    assert "open until" in ok(host, "reopen", str(cid), "--until", "+1h")
    name = json.loads(ok(mine, "whoami", "--json"))["name"]
    assert "copied" in ok(host, "disqualify", str(cid), name, "--reason", "copied")
    assert "copied" in fails(mine, "submit", str(cid), str(tmp_path / "mine.csv"))
    assert "archived" in ok(host, "delete", str(cid))


def test_cli_delete_without_submissions(env, tmp_path) -> None:
    """A competition nobody submitted to is deleted."""
    cid = hosted(env, tmp_path)
    host = {**env, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "host-config")}
    assert f"competition {cid}: deleted" in ok(host, "delete", str(cid))
    assert f"no competition {cid}" in fails(host, "show", str(cid))


def test_magics_final_and_host_tools(shell: InteractiveShell, notebook_hosted, tmp_path) -> None:
    """%crowdsource final, board, received, edit, disqualify and delete in a notebook."""
    cid, host = notebook_hosted.id, notebook_hosted.client
    cs(shell, f"register {unique('alice')}")
    alice = session.client().participant["name"]
    prediction = notebook_hosted.template()
    prediction["label"] = "a"
    shell.user_ns["pred"] = prediction
    cs(shell, f"submit {cid} pred")
    assert "(your best public ones" in cs(shell, f"final {cid}")
    assert "at most 2" in usage_error(shell, f"final {cid} 1 2 3")
    board = cs(shell, f"board {cid} --csv {tmp_path / 'board.csv'}")
    assert isinstance(board, pd.DataFrame) and list(board["participant"]) == [alice]
    assert pd.read_csv(tmp_path / "board.csv")["participant"].tolist() == [alice]
    assert "only the host" in usage_error(shell, f"edit {cid} --title Mine")
    session.use(host)  # the notebook acts as the host again
    assert cs(shell, f"edit {cid} --title Renamed").title == "Renamed"
    assert list(cs(shell, f"received {cid}")["participant"]) == [alice]
    assert "disqualified" in cs(shell, f"disqualify {cid} {alice} --reason copied")
    assert "archived" in cs(shell, f"delete {cid}")
