"""The seed's Quick Example end to end: server, client1 and client2 as real processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for the example scripts, with a private credentials folder."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    values["CROWDSOURCE_CONFIG_DIR"] = str(tmp_path / "config")
    values["PYTHONPATH"] = os.pathsep.join([str(ROOT), values.get("PYTHONPATH", "")])
    return values


def test_quick_example(new_server, env, tmp_path) -> None:
    """client1's two functions are scored on both of client2's competitions."""
    server = new_server()
    env["CROWDSOURCE_URL"] = server.url.removeprefix("http://")
    with open(tmp_path / "client1.log", "w") as log:
        client1 = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "client1.py")], env=env, stdout=log, stderr=log
        )
    try:
        client2 = subprocess.run(
            [sys.executable, str(EXAMPLES / "client2.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        client1.send_signal(signal.SIGTERM)
        client1.wait(20)
    assert client2.returncode == 0, client2.stderr
    final = client2.stdout.split("Leaderboards after round 2:")[1]
    for name in ("client1-foo1", "client1-foo2"):
        rows = [line for line in final.splitlines() if name in line]
        assert len(rows) == 2, client2.stdout
        assert all(re.search(r"\s\d\.\d+\s", row) for row in rows)
    assert client1.returncode == 0, (tmp_path / "client1.log").read_text()


def test_client1_exits_after_rounds(new_server, env) -> None:
    """client1 --rounds N exits by itself once each function answered N times."""
    server = new_server()
    env["CROWDSOURCE_URL"] = server.url
    client1 = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "client1.py"), "--rounds", "1"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    subprocess.run(
        [sys.executable, str(EXAMPLES / "client2.py"), "--rounds", "1"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    out, _ = client1.communicate(timeout=60)
    assert client1.returncode == 0 and "foo2: competition" in out


def test_demo_script(env, tmp_path) -> None:
    """examples/demo.sh runs everything and leaves the server running, saying how to stop it."""
    env.update(PYTHON=sys.executable, CROWDSOURCE_PORT="0", TMPDIR=str(tmp_path))
    result = subprocess.run(
        ["bash", str(EXAMPLES / "demo.sh")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    started = re.search(r"server pid (\d+)", result.stdout)
    if started:
        os.kill(int(started.group(1)), signal.SIGTERM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert started and f"Stop it with: kill {started.group(1)}" in result.stdout
    assert "client1-foo1" in result.stdout and "client1-foo2" in result.stdout


def test_client2_gives_up_when_nobody_competes(new_server, env, tmp_path) -> None:
    """Without client1, client2 waits its --timeout for each round and exits, although the
    server's pings (every half second here) keep its event stream busy meanwhile."""
    server = new_server(str(tmp_path / "alone.db"), "--ping-interval=0.5")
    env["CROWDSOURCE_URL"] = server.url
    client2 = subprocess.run(
        [sys.executable, str(EXAMPLES / "client2.py"), "--timeout", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert client2.returncode == 0, client2.stderr
    assert client2.stdout.count("is client1.py running?") == 2
