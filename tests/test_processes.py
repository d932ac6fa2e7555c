"""`--processes N` on SQLite: the processes share one port, restart on it at once, and pass
every event to each other, bursts included."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from tests.api import Api, events_url, read_event
from tests.support import ServerProcess, bearer

SUBMISSIONS = 2000


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


def watchers_on_every_process(server: ServerProcess, processes: int, each: int = 2) -> list[Any]:
    """Event streams, `each` on every serving process (the kernel picks the process of each
    new connection; its handshake answer names it)."""
    found: dict[str, list[Any]] = {}
    for _ in range(200):
        if len(found) == processes and all(len(ws) >= each for ws in found.values()):
            break
        ws = websocket.create_connection(events_url(server), timeout=30)
        process = ws.getheaders()["x-crowdsource-process"]
        if len(found.setdefault(process, [])) < each:
            read_event(ws, "hello")
            found[process].append(ws)
        else:
            ws.close()
    assert sorted(found) == [str(i + 1) for i in range(processes)]
    return [ws for streams in found.values() for ws in streams]


def scored_ids(ws: Any, expected: int, seen: set[int], quiet: float = 60.0) -> None:
    """Collect the submission ids of `submission.scored` events until `expected` are seen or
    none has come for `quiet` seconds (the server's pings keep the socket itself busy)."""
    ws.settimeout(2)
    last = time.monotonic()
    while len(seen) < expected and time.monotonic() - last < quiet:
        try:
            event = json.loads(ws.recv())
        except websocket.WebSocketTimeoutException:
            continue
        if event["type"] == "submission.scored":
            seen.add(event["data"]["submission_id"])
            last = time.monotonic()


@pytest.mark.timeout(600)
def test_every_event_reaches_every_process_in_a_burst(tmp_path: Path, new_server) -> None:
    """2,000 small submissions at once, to four competitions from eight participants, on a
    --processes 2 server: every watcher, on either process, is told of every score."""
    server = new_server(str(tmp_path / "burst.db"), "--processes=2", "--write-rate=0")
    host = Api(server)
    rows = {"columns": ["id", "y"], "data": [[i, float(i)] for i in range(5)]}
    comps = [
        host.host(
            type="regress",
            targets=["y"],
            dataset={"columns": ["id"], "data": [[i] for i in range(5)]},
            answer=rows,
            daily_limit=100_000,
        )["id"]
        for _ in range(4)
    ]
    people = [Api(server) for _ in range(8)]
    streams = watchers_on_every_process(server, 2)
    seen: list[set[int]] = [set() for _ in streams]
    readers = [
        threading.Thread(target=scored_ids, args=(ws, SUBMISSIONS, ids))
        for ws, ids in zip(streams, seen, strict=True)
    ]
    for reader in readers:
        reader.start()

    def submit(n: int) -> int:
        """One submission, on this thread's own connection."""
        person = people[n % len(people)]
        session = sessions.setdefault(threading.get_ident(), requests.Session())
        r = session.post(
            f"{server.url}/api/v1/competitions/{comps[n % len(comps)]}/submissions",
            json={"predictions": rows},
            headers=bearer(person.token),
            timeout=120,
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    sessions: dict[int, requests.Session] = {}
    with ThreadPoolExecutor(16) as pool:
        made = set(pool.map(submit, range(SUBMISSIONS)))
    for reader in readers:
        reader.join(300)
    for ws in streams:
        ws.close()
    assert len(made) == SUBMISSIONS
    assert [len(made - ids) for ids in seen] == [0] * len(streams)
    assert "not sent" not in server.log.read_text()
