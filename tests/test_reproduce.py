"""Reproducing a submission: its recorded function, written in a notebook, runs again in a
fresh Python process on the competition's dataset, and its predictions are compared with the
stored ones by id; the provenance is shown by the CLI and the magic (a real server, kernel
shell and subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import crowdsource.client as CC
from crowdsource.client.reproduce import NotReproducible, compare
from crowdsource.notebook import session
from tests.support import ServerProcess

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOK_CELL = """
import numpy as np
import pandas as pd

THRESHOLD = 0.1

def above(x):
    return (x > THRESHOLD).astype(int)

@print  # a decorator is not run again
def decorated(c):
    return c

def predict(competition):
    data = competition.dataset
    return pd.DataFrame({"label": above(data["x"]), "id": data["id"]}).iloc[::-1]

def noisy(competition):
    data = competition.dataset
    labels = np.random.default_rng().integers(0, 2, len(data))
    return pd.DataFrame({"id": data["id"], "label": labels})
"""


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """An IPython shell with the extension loaded and the notebook's functions defined."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "crowdsource")
    assert ip.run_cell(NOTEBOOK_CELL).success
    yield ip
    session.state().client = None


def world(server: ServerProcess, ip: InteractiveShell) -> dict[str, Any]:
    """A host's classify competition; the notebook's participant submits `predict` (source
    shared), `noisy` (source shared) and `predict` again (source not shared)."""
    host = CC.Client(server.url, progress=False)
    host.register(f"host-{uuid.uuid4().hex[:8]}", save=False)
    ids = np.arange(1, 41)
    comp = host.host(
        pd.DataFrame({"id": ids, "x": np.linspace(-1, 1, 40)}),
        pd.DataFrame({"id": ids, "label": (np.linspace(-1, 1, 40) > 0).astype(int)}),
        type="classify",
        metric="accuracy",
    )
    me = CC.Client(server.url, progress=False)
    me.register(f"me-{uuid.uuid4().hex[:8]}", save=False)
    ip.run_line_magic("crowdsource", f"connect {server.url} --token {me.token}")
    ns = ip.user_ns
    competition = me.competition(comp.id)
    sent = {
        name: me.submit(comp.id, ns[name](competition), function=ns[name], share_source=share)
        for name, share in (("predict", True), ("noisy", True))
    }
    sent["quiet"] = me.submit(comp.id, ns["predict"](competition), function=ns["predict"])
    return {"host": host, "me": me, "comp": comp, "sent": sent}


def run_cli(server: ServerProcess, token: str, tmp_path: Path, *args: str) -> Any:
    """`crowdsource ARGS` in a process of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env |= {"CROWDSOURCE_URL": server.url, "CROWDSOURCE_TOKEN": token}
    env["CROWDSOURCE_CONFIG_DIR"] = str(tmp_path / "cli")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "crowdsource.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_a_notebook_function_runs_again_and_matches(
    sqlite_server: ServerProcess, shell: InteractiveShell, tmp_path: Path
) -> None:
    """Its shared source holds what it needs from the notebook (imports, a constant, a helper)
    and no decorators; run again it gives the same predictions (rows in another order)."""
    w = world(sqlite_server, shell)
    sid = w["sent"]["predict"].id
    source = w["me"].provenance(sid)["provenance"]["function"]["source"]
    assert "THRESHOLD = 0.1" in source and "def above(x)" in source
    assert "import pandas as pd" in source and "@print" not in source

    found = shell.run_line_magic("crowdsource", f"reproduce {sid}")
    assert found.matched and found.rows == 40 and found.mismatched_rows == 0, found.message
    assert "matches the stored predictions" in repr(found)

    out = run_cli(sqlite_server, w["me"].token, tmp_path, "reproduce", str(sid), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["matched"] is True


def test_a_function_that_draws_at_random_does_not_match(
    sqlite_server: ServerProcess, shell: InteractiveShell, tmp_path: Path
) -> None:
    """The report says in how many rows it differs; the command exits 1."""
    w = world(sqlite_server, shell)
    found = w["me"].reproduce(w["sent"]["noisy"].id)
    assert not found.matched and 0 < found.mismatched_rows <= 40
    assert "differs in" in found.message
    out = run_cli(sqlite_server, w["me"].token, tmp_path, "reproduce", str(w["sent"]["noisy"].id))
    assert out.returncode == 1 and "differs in" in out.stdout


def test_without_a_shared_source_it_says_how_to_share_it(
    sqlite_server: ServerProcess, shell: InteractiveShell, tmp_path: Path
) -> None:
    """NotReproducible in the client, a one-line UsageError in the notebook, exit 1 in the CLI."""
    w = world(sqlite_server, shell)
    sid = w["sent"]["quiet"].id
    with pytest.raises(NotReproducible, match="share_source=True"):
        w["me"].reproduce(sid)
    with pytest.raises(UsageError, match="not its source"):
        shell.run_line_magic("crowdsource", f"reproduce {sid}")
    out = run_cli(sqlite_server, w["me"].token, tmp_path, "reproduce", str(sid))
    assert out.returncode == 1 and "share_source=True" in out.stderr


def test_provenance_in_the_cli_and_the_notebook(
    sqlite_server: ServerProcess, shell: InteractiveShell, tmp_path: Path
) -> None:
    """`crowdsource provenance SUB` and `%crowdsource provenance SUB` show the function, its
    digest, the versions and the source (escaped in HTML); the host is told to wait."""
    w = world(sqlite_server, shell)
    sid = w["sent"]["predict"].id
    record = w["me"].provenance(sid)["provenance"]
    out = run_cli(sqlite_server, w["me"].token, tmp_path, "provenance", str(sid))
    assert out.returncode == 0, out.stderr
    assert f"predict (digest {record['function']['digest']})" in out.stdout
    assert "def predict(competition)" in out.stdout
    view = shell.run_line_magic("crowdsource", f"provenance {sid}")
    assert f"numpy {np.__version__}" in repr(view)
    assert "&gt; THRESHOLD" in view._repr_html_()
    out = run_cli(sqlite_server, w["host"].token, tmp_path, "provenance", str(sid), "--json")
    assert out.returncode == 1
    assert "once competition" in json.loads(out.stderr)["error"]["message"]


def test_compare_aligns_by_id_within_a_tolerance() -> None:
    """Row order does not matter; floats within 1e-6 match; a missing id differs."""
    stored = pd.DataFrame({"id": [1, 2, 3], "p": [0.1, 0.2, 0.3], "c": ["a", "b", "c"]})
    again = stored.iloc[::-1].assign(p=lambda d: d["p"] + 1e-9)
    assert compare(stored, again, id_column="id")[:2] == (3, 0)
    assert compare(stored, again.iloc[1:], id_column="id")[:2] == (3, 1)
    assert compare(stored, again.assign(c="a"), id_column="id")[:2] == (3, 2)
