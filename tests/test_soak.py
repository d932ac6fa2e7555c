"""Crash-kill soak: clients keep submitting while the server is SIGKILLed and restarted.

Every submission the server acknowledged with a 2xx must survive, be scored exactly once and
never be duplicated by a client's retry (clients retry with the same Idempotency-Key, as a real
client does), and every leaderboard must equal one recomputed from the submissions.

CI size: 5 kills per database. A long run: CROWDSOURCE_SOAK_KILLS=50 (see SECURITY.md).
"""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import ServerProcess, bearer

KILLS = int(os.environ.get("CROWDSOURCE_SOAK_KILLS", "5"))
CLIENTS = int(os.environ.get("CROWDSOURCE_SOAK_CLIENTS", "4"))
ROWS = 30


def answer_value(i: int) -> float:
    """The true target of row `i`."""
    return i * 1.25 - 3.0


def host_competition(server: ServerProcess, host: dict[str, Any]) -> int:
    """A regression round with a public/private split; returns its id."""
    spec = {
        "title": "soak",
        "type": "regress",
        "metric": "rmse",
        "targets": ["y"],
        "dataset": {"columns": ["id", "x"], "data": [[i, i * 0.5] for i in range(ROWS)]},
        "answer": {"columns": ["id", "y"], "data": [[i, answer_value(i)] for i in range(ROWS)]},
        "public_fraction": 0.5,
    }
    r = requests.post(
        server.url + "/api/v1/competitions", json=spec, headers=bearer(host["token"]), timeout=30
    )
    r.raise_for_status()
    return int(r.json()["id"])


def predictions(offset: float) -> dict[str, Any]:
    """Predictions off by `offset` on every row: their RMSE on any rows is |offset|."""
    return {
        "predictions": {
            "columns": ["id", "y"],
            "data": [[i, answer_value(i) + offset] for i in range(ROWS)],
        }
    }


@dataclass
class Client:
    """One participant submitting in a loop; remembers what the server acknowledged."""

    server: ServerProcess
    competition: int
    name: str
    token: str
    pid: int
    acked: dict[str, tuple[int, float]] = field(default_factory=dict)
    surprises: list[str] = field(default_factory=list)
    retries: int = 0

    def submit(self, key: str, offset: float, wait: bool) -> None:
        """POST one submission, retrying with the same key until it is acknowledged."""
        url = f"{self.server.url}/api/v1/competitions/{self.competition}/submissions"
        headers = {**bearer(self.token), "Idempotency-Key": key}
        while True:
            try:
                r = requests.post(
                    url,
                    params={"wait": str(wait).lower()},
                    json=predictions(offset),
                    headers=headers,
                    timeout=20,
                )
            except requests.RequestException:
                self.retries += 1
                time.sleep(0.1)
                continue
            if r.status_code in (200, 201, 202):
                self.acked[key] = (int(r.json()["id"]), abs(offset))
                return
            self.surprises.append(f"{key}: {r.status_code} {r.text[:200]}")
            if r.status_code < 500:
                return
            time.sleep(0.1)

    def run(self, stop: threading.Event) -> None:
        """Submit until told to stop, a quarter of the time with ?wait=false."""
        rng = random.Random(self.name)
        n = 0
        while not stop.is_set():
            n += 1
            self.submit(f"{self.name}-{n}", round(rng.uniform(0.01, 9.0), 4), rng.random() > 0.25)


def get(server: ServerProcess, path: str, token: str | None = None) -> Any:
    """GET an API path as JSON."""
    headers = bearer(token) if token else {}
    r = requests.get(server.url + "/api/v1" + path, headers=headers, timeout=30)
    r.raise_for_status()
    return r.json()


def settled(server: ServerProcess, client: Client, timeout: float = 60.0) -> list[dict[str, Any]]:
    """A client's submissions once none is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        subs = get(server, f"/competitions/{client.competition}/submissions", client.token)
        subs = subs["submissions"]
        if all(s["state"] != "pending" for s in subs) or time.monotonic() > deadline:
            return list(subs)
        time.sleep(0.2)


def check_client(server: ServerProcess, client: Client) -> list[dict[str, Any]]:
    """Every acknowledged submission is there once, scored once, with the right score."""
    assert not client.surprises, client.surprises
    subs = settled(server, client)
    by_id = {s["id"]: s for s in subs}
    assert len(by_id) == len(subs), "a submission is listed twice"
    acked_ids = [sid for sid, _ in client.acked.values()]
    assert len(set(acked_ids)) == len(acked_ids), "two keys were acknowledged as one submission"
    assert set(by_id) == set(acked_ids), (
        f"lost {set(acked_ids) - set(by_id)}, unacknowledged extras {set(by_id) - set(acked_ids)}"
    )
    for key, (sid, error) in client.acked.items():
        sub = by_id[sid]
        assert sub["state"] == "scored", (key, sub)
        assert len(sub["history"]) == 1, f"{key} was scored {len(sub['history'])} times"
        assert sub["public_score"] == pytest.approx(error, abs=1e-9), (key, sub)
    return subs


def expected_board(subs: dict[int, list[dict[str, Any]]], score: str) -> dict[int, tuple]:
    """Each participant's best score (lowest RMSE) and submission count, recomputed."""
    return {pid: (min(s[score] for s in mine), len(mine)) for pid, mine in subs.items() if mine}


def board_of(server: ServerProcess, competition: int, board: str) -> dict[int, tuple]:
    """A leaderboard as participant id -> (score, submissions), checking ranks are ordered."""
    data = get(server, f"/competitions/{competition}/leaderboard?board={board}")
    scores = [e["score"] for e in data["entries"]]
    assert scores == sorted(scores), f"{board} board is not ordered: {scores}"
    return {e["participant"]["id"]: (e["score"], e["submissions"]) for e in data["entries"]}


def assert_boards_equal(actual: dict[int, tuple], expected: dict[int, tuple]) -> None:
    """Same participants, same counts, same best scores."""
    assert set(actual) == set(expected)
    for pid, (score, count) in expected.items():
        assert actual[pid][1] == count, f"participant {pid}: {actual[pid][1]} != {count}"
        assert actual[pid][0] == pytest.approx(score, abs=1e-9), pid


def test_acknowledged_submissions_survive_sigkill(
    database: str, tmp_path: Path, new_server: Any
) -> None:
    """Clients submit while the server is killed KILLS times; nothing acknowledged is lost."""
    server = new_server(database, "--write-rate=100000", "--write-burst=100000", "--scoring=thread")
    host = server.register("soak-host")
    competition = host_competition(server, host)
    clients = []
    for i in range(CLIENTS):
        me = server.register(f"soak-{i}")
        clients.append(Client(server, competition, me["name"], me["token"], me["id"]))
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, args=(stop,), daemon=True) for c in clients]
    for t in threads:
        t.start()
    rng = random.Random(2024)
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 1.5))
        server.restart()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(120)
        assert not t.is_alive(), "a client never got its submission acknowledged"

    subs = {client.pid: check_client(server, client) for client in clients}
    acked = sum(len(c.acked) for c in clients)
    retries = sum(c.retries for c in clients)
    print(f"{KILLS} kills survived; {acked} acknowledged submissions, {retries} retries")
    assert acked >= 2 * CLIENTS
    assert retries > 0, "no request ever met a dead server; the kills proved nothing"
    assert_boards_equal(
        board_of(server, competition, "public"), expected_board(subs, "public_score")
    )

    r = requests.post(
        f"{server.url}/api/v1/competitions/{competition}/close",
        headers=bearer(host["token"]),
        timeout=30,
    )
    r.raise_for_status()
    closed = {client.pid: settled(server, client) for client in clients}
    assert_boards_equal(
        board_of(server, competition, "private"), expected_board(closed, "private_score")
    )
    assert "Traceback" not in server.log.read_text()
