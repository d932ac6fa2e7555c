"""`%crowdsource serve` in a real kernel: its temporary folder (database, secret) is mode 700
and removed on every way out: `serve --stop`, the kernel's shutdown, the kernel's death, and
the server's own crash."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parents[1]
SERVE = """
%load_ext crowdsource
%crowdsource serve
import json
from crowdsource.notebook import session
_server = session.state().server
print(json.dumps({"workdir": str(_server.workdir), "pid": _server._proc.pid,
                  "url": _server.url}))
"""


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[KernelManager]:
    """A real IPython kernel of this environment, with a private credentials folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env["CROWDSOURCE_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=env, cwd=str(tmp_path))
    yield manager
    if manager.is_alive():
        manager.shutdown_kernel(now=True)


def execute(manager: KernelManager, code: str) -> str:
    """Run `code` in the kernel; return what it printed (an error fails the test)."""
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        out: list[str] = []
        reply = client.execute_interactive(
            code,
            timeout=120,
            output_hook=lambda msg: (
                out.append(msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None
            ),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


def serve(manager: KernelManager) -> dict:
    """Start an embedded server in the kernel; its folder, process id and URL."""
    printed = execute(manager, SERVE)
    found = json.loads(printed.strip().splitlines()[-1])
    folder = Path(found["workdir"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (folder / "crowdsource.db").exists()
    return found


def gone(path: Path, within: float = 30.0) -> bool:
    """True once `path` no longer exists (waiting up to `within` seconds for it)."""
    deadline = time.monotonic() + within
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_removed_after_an_explicit_stop(kernel: KernelManager) -> None:
    """`%crowdsource serve --stop` removes the folder at once."""
    folder = Path(serve(kernel)["workdir"])
    execute(kernel, "%crowdsource serve --stop")
    assert not folder.exists()


def test_removed_when_the_kernel_shuts_down(kernel: KernelManager) -> None:
    """A polite kernel shutdown (as Jupyter's menu does) removes the folder."""
    folder = Path(serve(kernel)["workdir"])
    kernel.shutdown_kernel()
    assert gone(folder)


def test_removed_when_the_kernel_is_killed(kernel: KernelManager) -> None:
    """A kernel killed outright: the server sees its pipe close, stops and removes it."""
    folder = Path(serve(kernel)["workdir"])
    kernel.signal_kernel(signal.SIGKILL)
    assert gone(folder)


def test_removed_when_the_server_crashes(kernel: KernelManager) -> None:
    """The server killed while the kernel lives: the kernel removes the folder."""
    found = serve(kernel)
    os.kill(found["pid"], signal.SIGKILL)
    assert gone(Path(found["workdir"]))
    assert "True" in execute(kernel, "print(session.state().server.running is False)")
