"""Make competitions and submissions through the REST API, as any client would."""

from __future__ import annotations

import uuid

import requests

XSS = "<img src=x onerror=alert(1)>"
# A name that would be a live link and bold text if anything rendered it as markup.
CLAIM = '<a href="https://x.test">claim</a><b>x</b>'
IDS = list(range(1, 11))
TRUTH = [float(i) for i in IDS]


class Api:
    """A thin REST helper bound to one server URL."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") + "/api/v1"

    def register(self, name: str = "") -> dict:
        """A new participant; its JSON includes the token."""
        name = name or f"p-{uuid.uuid4().hex[:12]}"
        r = requests.post(f"{self.url}/participants", json={"name": name}, timeout=10)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def create_competition(self, host: dict, title: str) -> dict:
        """A small regression competition (rmse, lower is better) with the answer known."""
        body = {
            "title": title,
            "description": "Predict y from x.",
            "type": "regress",
            "metric": "rmse",
            "id_column": "id",
            "targets": ["y"],
            "dataset": {"columns": ["id", "x"], "data": [[i, i * 0.5] for i in IDS]},
            "answer": {
                "columns": ["id", "y"],
                "data": [[i, t] for i, t in zip(IDS, TRUTH, strict=True)],
            },
        }
        r = requests.post(f"{self.url}/competitions", json=body, timeout=30, headers=_auth(host))
        assert r.status_code == 201, r.text
        return dict(r.json())

    def submit(self, who: dict, competition: dict, error: float) -> dict:
        """Predictions off the truth by `error` everywhere (so rmse == error)."""
        rows = [[i, t + error] for i, t in zip(IDS, TRUTH, strict=True)]
        r = requests.post(
            f"{self.url}/competitions/{competition['id']}/submissions",
            json={"predictions": {"columns": ["id", "y"], "data": rows}},
            headers=_auth(who),
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return dict(r.json())


def _auth(who: dict) -> dict:
    return {"Authorization": f"Bearer {who['token']}"}
