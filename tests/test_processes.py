"""`--processes N` on SQLite: the processes share one port, restart on it at once, and pass
every event to each other, bursts included."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import ServerProcess


def keep_alive_clients(server: ServerProcess, count: int = 8) -> list[requests.Session]:
    """Clients that each made a few requests on one kept-alive connection (the kernel spreads
    the connections over the processes), still open."""
    sessions = [requests.Session() for _ in range(count)]
    for session in sessions:
        for _ in range(3):
            session.get(server.url + "/api/v1/competitions", timeout=30).raise_for_status()
    return sessions


@pytest.mark.parametrize(
    ("before", "after"), [(2, 2), (1, 2), (2, 1)], ids=["2-then-2", "1-then-2", "2-then-1"]
)
def test_a_server_restarts_at_once_on_the_same_port(
    tmp_path: Path, new_server, before: int, after: int
) -> None:
    """Stopped after serving kept-alive clients (its side of each connection is left in
    TIME_WAIT), a server starts again on the same port at once, with as many processes as
    before or another number."""
    server = new_server(str(tmp_path / "multi.db"), f"--processes={before}")
    port = server.port
    for _ in range(2):
        sessions = keep_alive_clients(server)
        server.stop()
        with pytest.raises(ConnectionRefusedError):  # its processes have all stopped
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        for session in sessions:
            session.close()
        server.extra = [f"--processes={after}"]
        server.start()
        assert server.port == port
        assert requests.get(server.url + "/api/v1/competitions", timeout=30).status_code == 200


def test_a_port_in_use_is_refused_in_one_line(tmp_path: Path) -> None:
    """A port another program listens on: the server says so and exits, no traceback."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        for processes in (1, 2):
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "crowdsource.server",
                    "--ip=127.0.0.1",
                    f"--port={port}",
                    f"--db={tmp_path / 'busy.db'}",
                    f"--processes={processes}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 1
            assert f"port {port} on 127.0.0.1 is in use" in done.stderr
            assert "Traceback" not in done.stderr
