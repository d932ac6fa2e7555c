"""Durability: submissions the server acknowledged survive a SIGKILL. After a restart on the same
database every one is present and scored (pending ones finish then), and each leaderboard equals
one recomputed from the participants' own submission lists. Run on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from tests.support import ServerProcess, postgres_database

API = "/api/v1"
ROWS = 25_000  # big enough that scoring goes to the process pool and takes a moment
PEOPLE = 4
N = 24
LAST_PENDING = 6  # the last submissions before the kill are all `?wait=false`, sent at once


def split(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as split-form JSON."""
    return dict(json.loads(df.to_json(orient="split", index=False)))


def post(server: ServerProcess, path: str, token: str, body: Any) -> requests.Response:
    """POST JSON with a token."""
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(server.url + API + path, json=body, headers=headers, timeout=60)


def get(server: ServerProcess, path: str, token: str | None = None) -> Any:
    """GET JSON (with a token if given); must answer 200."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.get(server.url + API + path, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of `kind`: a SQLite file, or a throwaway PostgreSQL database."""
    if kind == "sqlite":
        yield str(tmp_path / "crowdsource.db")
        return
    with postgres_database() as url:
        yield url


@dataclass
class Game:
    """One competition, its truth, and how to score predictions for it locally."""

    id: int
    column: str
    truth: np.ndarray
    score: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool


@dataclass
class Arena:
    """A host, participants and two competitions (one per metric direction) on a server."""

    server: ServerProcess
    tokens: dict[int, str] = field(default_factory=dict)
    games: list[Game] = field(default_factory=list)
    expected: dict[int, float] = field(default_factory=dict)  # submission id -> local score

    @classmethod
    def open(cls, server: ServerProcess) -> Arena:
        """Register everyone and host a regress (rmse) and a classify (accuracy) competition."""
        arena = cls(server)
        host = server.register(f"durable-host-{uuid.uuid4().hex[:12]}")
        for _ in range(PEOPLE):
            person = server.register(f"durable-{uuid.uuid4().hex[:12]}")
            arena.tokens[person["id"]] = person["token"]
        rng = np.random.default_rng(7)
        ids = np.arange(1000, 1000 + ROWS)
        dataset = pd.DataFrame({"id": ids, "x": rng.normal(size=ROWS)})
        y = rng.normal(size=ROWS)
        labels = rng.choice(["cat", "dog"], size=ROWS)
        regress = {"type": "regress", "metric": "rmse", "targets": ["y"],
                   "answer": split(pd.DataFrame({"id": ids, "y": y}))}  # fmt: skip
        classify = {"type": "classify", "metric": "accuracy", "targets": ["label"],
                    "answer": split(pd.DataFrame({"id": ids, "label": labels}))}  # fmt: skip
        for spec in (regress, classify):
            body = {"title": f"durable {spec['metric']}", "dataset": split(dataset), **spec}
            r = post(server, "/competitions", host["token"], body)
            assert r.status_code == 201, r.text
            higher = bool(r.json()["higher_is_better"])
            truth, column = (y, "y") if spec is regress else (labels, "label")
            score = rmse if spec is regress else accuracy
            arena.games.append(Game(r.json()["id"], column, truth, score, higher))
        return arena

    def submit(self, k: int) -> requests.Response:
        """The k-th submission: participant k % PEOPLE, alternating competitions, some no-wait."""
        game, pid = self.games[k % 2], list(self.tokens)[k % PEOPLE]
        rng = np.random.default_rng(k)
        if game.column == "y":
            pred: np.ndarray = game.truth + rng.normal(scale=1 + k % 5, size=ROWS)
        else:
            pred = np.where(rng.random(ROWS) < 0.5 + k / 100, game.truth, "cat")
        ids = np.arange(1000, 1000 + ROWS)
        frame = split(pd.DataFrame({"id": ids, game.column: pred}))
        wait = "false" if k % 3 == 0 or k >= N - LAST_PENDING else "true"
        path = f"/competitions/{game.id}/submissions?wait={wait}"
        r = post(self.server, path, self.tokens[pid], {"predictions": frame})
        assert r.status_code == (202 if wait == "false" else 201), r.text
        self.expected[r.json()["id"]] = game.score(game.truth, pred)
        return r

    def submissions(self, game: Game) -> dict[int, list[dict[str, Any]]]:
        """Each participant's own submissions to a competition, as they list them."""
        return {
            pid: get(self.server, f"/competitions/{game.id}/submissions", token)["submissions"]
            for pid, token in self.tokens.items()
        }

    def settled(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Every submission once none is pending any more."""
        deadline = time.monotonic() + timeout
        while True:
            subs = [s for t in self.tokens.values() for s in get(self.server, "/submissions", t)[
                "submissions"]]  # fmt: skip
            if all(s["state"] != "pending" for s in subs) or time.monotonic() > deadline:
                return subs
            time.sleep(0.2)


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((truth - pred) ** 2)))


def accuracy(truth: np.ndarray, pred: np.ndarray) -> float:
    """Share of labels that match."""
    return float(np.mean(truth == pred))


def recomputed(game: Game, mine: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """A board rebuilt from submission lists: best score, count, last time, shared ranks."""
    pick = max if game.higher_is_better else min
    rows = {
        pid: {
            "score": pick(s["public_score"] for s in subs),
            "submissions": len(subs),
            "last_submission_at": max(datetime.fromisoformat(s["created_at"]) for s in subs),
        }
        for pid, subs in mine.items()
        if subs
    }
    for row in rows.values():
        better = [o for o in rows.values() if pick(o["score"], row["score"]) != row["score"]]
        row["rank"] = len(better) + 1
    return rows


def shown(board: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """A served board keyed by participant id, in the shape `recomputed` builds."""
    ranks = [e["rank"] for e in board["entries"]]
    assert ranks == sorted(ranks), ranks
    return {
        e["participant"]["id"]: {
            "score": e["score"],
            "submissions": e["submissions"],
            "last_submission_at": datetime.fromisoformat(e["last_submission_at"]),
            "rank": e["rank"],
        }
        for e in board["entries"]
    }


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_acknowledged_submissions_survive_sigkill(
    kind: str, new_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """SIGKILL right after N acknowledged submissions; after a restart all N are scored."""
    with database(kind, tmp_path) as db:
        server = new_server(db)
        arena = Arena.open(server)
        acked = [arena.submit(k).json()["id"] for k in range(N - LAST_PENDING)]
        with ThreadPoolExecutor(LAST_PENDING) as pool:  # a burst the scorer cannot keep up with
            acked += [r.json()["id"] for r in pool.map(arena.submit, range(N - LAST_PENDING, N))]
        killed_at = datetime.now(timezone.utc)
        server.kill()
        server.start()
        subs = arena.settled()
        assert sorted(s["id"] for s in subs) == sorted(acked)
        assert {s["state"] for s in subs} == {"scored"}, [s for s in subs if s["state"] != "scored"]
        for s in subs:
            assert s["public_score"] == pytest.approx(arena.expected[s["id"]], rel=1e-9, abs=1e-12)
        assert any(datetime.fromisoformat(s["scored_at"]) > killed_at for s in subs)
        for game in arena.games:
            board = get(server, f"/competitions/{game.id}/leaderboard")
            assert shown(board) == recomputed(game, arena.submissions(game))
        server.stop()
