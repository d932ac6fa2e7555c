"""Concurrency: 16 clients x 100 submissions at once against a daily limit.

Half the clients share one participant (the hardest race for the quota check), the other half
are spread over four more participants. Each participant must get exactly its daily limit
accepted, every accepted submission must be stored and on the leaderboard, and every refusal
must be a 429 saying when the limit resets. On SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.support import ServerProcess, bearer

LIMIT = 37
THREADS = 16
PER_THREAD = 100
ROWS = 12


def host_limited_competition(server: ServerProcess) -> int:
    """A regression round allowing LIMIT submissions a day; returns its id."""
    host = server.register("race-host")
    spec = {
        "title": "race",
        "type": "regress",
        "targets": ["y"],
        "dataset": {"columns": ["id", "x"], "data": [[i, i] for i in range(ROWS)]},
        "answer": {"columns": ["id", "y"], "data": [[i, 2.0 * i] for i in range(ROWS)]},
        "daily_limit": LIMIT,
    }
    r = requests.post(
        server.url + "/api/v1/competitions", json=spec, headers=bearer(host["token"]), timeout=30
    )
    r.raise_for_status()
    return int(r.json()["id"])


@dataclass
class Outcome:
    """What one participant's clients were told."""

    accepted: list[int] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    odd: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, r: requests.Response) -> None:
        """Record one answer; anything but an acceptance or a proper 429 is odd."""
        with self.lock:
            self.statuses[r.status_code] += 1
            if r.status_code in (201, 202):
                self.accepted.append(int(r.json()["id"]))
                return
            body = (
                r.json() if r.headers.get("Content-Type", "").startswith("application/json") else {}
            )
            proper = (
                r.status_code == 429
                and body.get("error") == "quota_exceeded"
                and "resets_at" in body
                and r.headers.get("Retry-After", "").isdigit()
            )
            if not proper:
                self.odd.append(f"{r.status_code} {r.text[:200]}")


def client(url: str, token: str, outcome: Outcome, start: threading.Barrier, offset: float) -> None:
    """Submit PER_THREAD times as fast as possible; every fourth without waiting for a score."""
    session = requests.Session()
    session.headers.update(bearer(token))
    body = {
        "predictions": {
            "columns": ["id", "y"],
            "data": [[i, 2.0 * i + offset] for i in range(ROWS)],
        }
    }
    start.wait()
    for n in range(PER_THREAD):
        wait = "false" if n % 4 == 3 else "true"
        outcome.add(session.post(url, params={"wait": wait}, json=body, timeout=60))


def pending_free(server: ServerProcess, path: str, token: str) -> list[dict[str, Any]]:
    """A listing once nothing in it is pending."""
    for _ in range(300):
        r = requests.get(server.url + path, headers=bearer(token), timeout=30)
        r.raise_for_status()
        subs = r.json()["submissions"]
        if all(s["state"] != "pending" for s in subs):
            break
        threading.Event().wait(0.1)
    return list(subs)


def test_daily_limit_holds_exactly_under_16_concurrent_clients(
    database: str, new_server: Any
) -> None:
    """16 x 100 submissions race; each participant gets exactly LIMIT, none lost."""
    server = new_server(database, "--write-rate=100000", "--write-burst=100000")
    cid = host_limited_competition(server)
    crowd = server.register("race-crowd")
    others = [server.register(f"race-{i}") for i in range(4)]
    # threads 0-7 share one participant; threads 8-15 are two each for four others
    owners = [crowd] * (THREADS // 2) + [p for p in others for _ in range(2)]
    outcomes = {p["id"]: Outcome() for p in [crowd, *others]}
    url = f"{server.url}/api/v1/competitions/{cid}/submissions"
    start = threading.Barrier(THREADS)
    threads = [
        threading.Thread(
            target=client, args=(url, p["token"], outcomes[p["id"]], start, 0.1 * (i + 1))
        )
        for i, p in enumerate(owners)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)

    total = sum(sum(o.statuses.values()) for o in outcomes.values())
    assert total == THREADS * PER_THREAD
    board = requests.get(f"{server.url}/api/v1/competitions/{cid}/leaderboard", timeout=30).json()
    counts = {e["participant"]["id"]: e["submissions"] for e in board["entries"]}
    for p in [crowd, *others]:
        outcome = outcomes[p["id"]]
        assert not outcome.odd, outcome.odd[:5]
        assert len(outcome.accepted) == LIMIT, f"{p['name']}: {outcome.statuses}"
        stored = pending_free(server, f"/api/v1/competitions/{cid}/submissions", p["token"])
        assert sorted(s["id"] for s in stored) == sorted(outcome.accepted)
        assert all(s["state"] == "scored" for s in stored)
        assert stored[0]["remaining_today"] == 0
        assert counts[p["id"]] == LIMIT
    print(f"{total} concurrent writes checked; {LIMIT} accepted for each of {len(outcomes)}")
    assert "Traceback" not in server.log.read_text()
