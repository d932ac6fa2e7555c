"""The notebook widget with a 10,000-entry board in a real kernel (issue 12)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_large_board import pytestmark as pytestmark  # needs seed_board
from tests.browser.test_large_board import seeded
from tests.test_widget_kernel import Kernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Kernel]:
    """A fresh kernel whose crowdsource config is empty."""
    env = dict(os.environ, CROWDSOURCE_CONFIG_DIR=str(tmp_path / "config"))
    env.pop("CROWDSOURCE_TOKEN", None)
    proc = Kernel(env)
    yield proc
    proc.stop()


def test_the_widget_state_holds_the_top_100_of_a_10001_entry_board(
    kernel: Kernel, new_server: Any
) -> None:
    """Seeded 10,000 plus one newcomer: the synced `board` holds the top 100 and the total."""
    server, api, comp = seeded(new_server)
    api.submit(api.register("newcomer"), comp, 0.5)
    kernel.run(f"%load_ext crowdsource\n%crowdsource connect {server.url}")
    kernel.run(f"w = %crowdsource leaderboard {comp['id']}")

    (printed,) = kernel.run(
        "import time\n"
        "for _ in range(300):\n"
        "    if w.board.get('total') == 10_001: break\n"
        "    time.sleep(0.1)\n"
        "print(w.board['total'], len(w.board['entries']), w.board['entries'][0]['name'])"
    )
    assert printed["content"]["text"].split() == ["10001", "100", "newcomer"]
