"""The leaderboard widget in a real kernel (jupyter_client), watched from its iopub channel as
a browser would: the first `%crowdsource leaderboard` of a fresh kernel, and the widget's
synced state following submissions made by another client."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from crowdsource.client import Client, Competition
from tests.kernel import Kernel
from tests.support import ServerProcess

MARKUP = '<a href="https://x.test">claim</a><b>x</b>'


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A fresh kernel whose crowdsource config is empty."""
    import os

    env = dict(os.environ, CROWDSOURCE_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("CROWDSOURCE_TOKEN", None)
    proc = Kernel(env)
    yield proc
    proc.stop()


@pytest.fixture
def competition(sqlite_server: ServerProcess) -> Competition:
    """A small regression competition (rmse) on the shared server."""
    host = Client(sqlite_server.url, progress=False)
    host.register(f"host-{uuid.uuid4().hex[:12]}", save=False)
    data = pd.DataFrame({"id": range(10), "x": np.arange(10.0)})
    return host.host(data, data.rename(columns={"x": "y"}), type="regress", title="Kernel")


def submit(server: ServerProcess, competition: Competition, name: str, error: float) -> None:
    """A new participant called `name` submits predictions off by `error` (rmse == error)."""
    player = Client(server.url, progress=False)
    player.register(name, save=False)
    frame = pd.DataFrame({"id": range(10), "y": np.arange(10.0) + error})
    player.submit(competition.id, frame)


def test_first_leaderboard_of_a_fresh_kernel(
    kernel: Kernel, sqlite_server: ServerProcess, competition: Competition
) -> None:
    """`%load_ext`, connect, then the first `%crowdsource leaderboard`: the widget arrives
    with its state (the seconds each step took are printed, not asserted)."""
    started = time.monotonic()
    kernel.run(f"%load_ext crowdsource\n%crowdsource connect {sqlite_server.url}")
    connected = time.monotonic()
    (result,) = kernel.run(f"%crowdsource leaderboard {competition.id}")
    shown = time.monotonic()
    print(
        f"\nload_ext + connect: {connected - started:.2f} s;"
        f" first leaderboard: {shown - connected:.2f} s; in all {shown - started:.2f} s"
    )
    data = result["content"]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith(f"LeaderboardWidget(competition {competition.id}")
    opened = [m for m in kernel.messages if m["msg_type"] == "comm_open"]
    states = [m["content"]["data"]["state"] for m in opened]
    assert any(s.get("competition_id") == competition.id for s in states)
    imported = kernel.run("import sys; print('plotly' in sys.modules)")
    assert imported[0]["content"]["text"].strip() == "False"


def test_widget_state_follows_other_clients(
    kernel: Kernel, sqlite_server: ServerProcess, competition: Competition
) -> None:
    """Submissions by other clients reach the widget's synced state after its cell finished:
    board entries in rank order, history points, names exactly as given."""
    kernel.run(f"%load_ext crowdsource\n%crowdsource connect {sqlite_server.url}")
    kernel.run(f"w = %crowdsource leaderboard {competition.id}")
    tag = uuid.uuid4().hex[:6]
    submit(sqlite_server, competition, f"{MARKUP}{tag}", 2.0)
    submit(sqlite_server, competition, f"plain-{tag}", 1.0)

    def both(state: dict[str, Any]) -> bool:
        return len(state.get("board", {}).get("entries", [])) == 2

    state = kernel.widget_state(both)
    assert [e["name"] for e in state["board"]["entries"]] == [f"plain-{tag}", f"{MARKUP}{tag}"]
    assert [e["rank"] for e in state["board"]["entries"]] == [1, 2]
    if "history" not in state:
        state = kernel.widget_state(lambda s: len(s.get("history", [])) == 2)
    assert sorted(p["score"] for p in state["history"]) == pytest.approx([1.0, 2.0])
    (printed,) = kernel.run("print([e['name'] for e in w.board['entries']], w.status)")
    assert f"[{f'plain-{tag}'!r}, {f'{MARKUP}{tag}'!r}] live" in printed["content"]["text"]
