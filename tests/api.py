"""Small helpers for tests that speak the REST API with requests."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
import pandas as pd
import requests

from tests.support import ServerProcess


def split(df: pd.DataFrame) -> dict[str, Any]:
    """A frame in split-form JSON, full float precision."""
    return dict(json.loads(df.to_json(orient="split", index=False, double_precision=15)))


class Api:
    """One registered participant talking to a real server."""

    def __init__(self, server: ServerProcess, name: str = "") -> None:
        me = server.register(name or f"p-{uuid.uuid4().hex[:12]}")
        self.url, self.id, self.name, self.token = server.url, me["id"], me["name"], me["token"]
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        """GET an API path."""
        return self.session.get(f"{self.url}/api/v1{path}", timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> requests.Response:
        """POST to an API path."""
        return self.session.post(f"{self.url}/api/v1{path}", timeout=60, **kw)

    def host(self, **spec: Any) -> dict[str, Any]:
        """Host a competition; fails the test if the server refuses."""
        for key in ("dataset", "answer"):
            if isinstance(spec.get(key), pd.DataFrame):
                spec[key] = split(spec[key])
        spec.setdefault("title", f"competition {uuid.uuid4().hex[:12]}")
        r = self.post("/competitions", json=spec)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def submit(self, cid: int, df: pd.DataFrame, **kw: Any) -> requests.Response:
        """Submit a prediction frame as split-form JSON."""
        return self.post(f"/competitions/{cid}/submissions", json={"predictions": split(df)}, **kw)

    def board(self, cid: int, board: str = "public") -> dict[str, Any]:
        """A leaderboard."""
        r = self.get(f"/competitions/{cid}/leaderboard", params={"board": board})
        assert r.status_code == 200, r.text
        return dict(r.json())


def classify_data(
    n: int = 200, classes: tuple[str, ...] = ("a", "b", "c"), seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A dataset and its answer for a classify competition (ids not in row order)."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + n))
    dataset = pd.DataFrame({"id": ids, "x": rng.normal(size=n)})
    answer = pd.DataFrame({"id": ids, "label": rng.choice(list(classes), n)})
    return dataset, answer


def probabilities(ids: np.ndarray, classes: tuple[str, ...], seed: int) -> pd.DataFrame:
    """Random class probabilities for each id, rows shuffled."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(len(classes)), len(ids))
    df = pd.DataFrame(p, columns=list(classes))
    df.insert(0, "id", ids)
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def events_url(server: ServerProcess, **query: Any) -> str:
    """The WebSocket URL of the event stream."""
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    return server.url.replace("http", "ws") + "/api/v1/events" + (f"?{qs}" if qs else "")


def read_event(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next event of a type from a websocket-client connection."""
    ws.settimeout(timeout)
    while True:
        event = json.loads(ws.recv())
        if event["type"] == kind:
            return dict(event)
