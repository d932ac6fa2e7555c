"""Hosting a 1,000-row competition: ours and the original, side by side in one loop.

Both servers run at once on fresh SQLite files and the hostings alternate, ours then the
original's, so a busy moment on this shared machine falls on both alike. Each hosting starts
from the DataFrames (dataset: id and three features; answer: id and label) and ends when the
created competition is answered: ours through `Client.host` (a multipart form of Parquet
parts), the original as its own client does it (`DataFrame.to_json()` inside a JSON spec,
POST /api/v1/competition). The request alone (a body encoded beforehand) is timed the same way.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from bench import ours, peer
from bench.common import cpu_seconds


def frames(n: int, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A dataset (id and three features) and its answer (id and a 0/1 label)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int64) * 7 + 3
    dataset = pd.DataFrame({"id": ids, **{f"x{i}": rng.random(n) for i in (1, 2, 3)}})
    return dataset, pd.DataFrame({"id": ids, "label": rng.integers(0, 2, n)})


class Ours:
    """Our server, hosting through the Python client."""

    name = "ours"

    def __init__(self, workdir: Path) -> None:
        from crowdsource.client import Client

        self.srv = ours.Server(workdir).start()
        self.client = Client(self.srv.url, progress=False)
        self.client.register(save=False)
        self.pid = self.srv.proc.pid

    def host(self, dataset: pd.DataFrame, answer: pd.DataFrame) -> None:
        """From DataFrames to the created competition."""
        self.client.host(
            dataset, answer, type="classify", metric="logloss", public_fraction=0.5, title="h"
        )

    def encoded(self, dataset: pd.DataFrame, answer: pd.DataFrame) -> Callable[[], None]:
        """The same request with its body encoded once, beforehand."""
        from urllib3 import encode_multipart_formdata

        from crowdsource.frames import PARQUET, to_parquet

        spec = {"title": "h", "type": "classify", "metric": "logloss", "targets": ["label"]}
        body, ctype = encode_multipart_formdata(
            {
                "spec": ("spec.json", json.dumps({**spec, "public_fraction": 0.5}).encode()),
                "dataset": ("dataset.parquet", to_parquet(dataset), PARQUET),
                "answer": ("answer.parquet", to_parquet(answer), PARQUET),
            }
        )
        headers = {"Authorization": f"Bearer {self.client.token}", "Content-Type": ctype}
        url = self.srv.api + "/competitions"
        return lambda: _posted(self.srv.http.post(url, data=body, headers=headers, timeout=60))

    def stop(self) -> None:
        self.client.close()
        self.srv.stop()


class Original:
    """crowdsource 0.1.0, hosting as its client does (to_json frames in a JSON spec)."""

    name = "original"

    def __init__(self, workdir: Path) -> None:
        self.proc, url = peer.start(workdir)
        self.url = url + "/api/v1/competition"
        self.http = peer._register(url, "host")
        self.pid = self.proc.pid

    def _body(self, dataset: pd.DataFrame, answer: pd.DataFrame) -> bytes:
        spec = {
            "title": "h",
            "type": "classify",
            "expiration": time.time() + 7200,
            "prize": 1,
            "metric": "logloss",
            "dataset": dataset.to_json(),
            "answer": answer.to_json(),
        }
        return json.dumps({"spec": spec}).encode()

    def host(self, dataset: pd.DataFrame, answer: pd.DataFrame) -> None:
        """From DataFrames to the created competition."""
        _posted(self.http.post(self.url, data=self._body(dataset, answer), timeout=60))

    def encoded(self, dataset: pd.DataFrame, answer: pd.DataFrame) -> Callable[[], None]:
        """The same request with its body encoded once, beforehand."""
        body = self._body(dataset, answer)
        return lambda: _posted(self.http.post(self.url, data=body, timeout=60))

    def stop(self) -> None:
        self.proc.stop()


def _posted(r: requests.Response) -> None:
    """Fail unless the server created the competition."""
    if r.status_code not in (200, 201) or not {"id", "competition_id"} & set(r.json()):
        raise RuntimeError(f"hosting answered {r.status_code}: {r.text[:300]}")


def _side_by_side(
    servers: list[Any], tasks: dict[str, Callable[[], None]], runs: int
) -> dict[str, dict[str, Any]]:
    """Run each server's task in turn, `runs` times after two warm-ups; times in ms."""
    for _ in range(2):
        for server in servers:
            tasks[server.name]()
    times: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu = {s.name: cpu_seconds(s.pid) for s in servers}
    for _ in range(runs):
        for server in servers:
            t0 = time.perf_counter()
            tasks[server.name]()
            times[server.name].append((time.perf_counter() - t0) * 1e3)
    return {
        s.name: {
            "p50_ms": statistics.median(times[s.name]),
            "min_ms": min(times[s.name]),
            "cpu_ms": (cpu_seconds(s.pid) - cpu[s.name]) * 1e3 / runs,
            "runs": runs,
        }
        for s in servers
    }


def run(cfg: dict, log: Callable[[str], None], with_peer: bool | str = True) -> dict:
    """Measure hosting for ours and (if `with_peer` is True) the original, interleaved;
    a string `with_peer` is the reason the original is not run."""
    n, runs = cfg["rows_small"], cfg.get("hosting_runs", 30)
    dataset, answer = frames(n)
    res: dict[str, Any] = {"rows": n}
    with tempfile.TemporaryDirectory(prefix="bench-hosting-") as td:
        servers: list[Any] = []
        try:
            (Path(td) / "ours").mkdir()
            servers.append(Ours(Path(td) / "ours"))
            if with_peer is True:
                try:
                    (Path(td) / "peer").mkdir()
                    servers.append(Original(Path(td) / "peer"))
                except Exception as exc:
                    res["peer"] = {"not_run": f"it did not start: {exc}"}
            else:
                res["peer"] = {"not_run": str(with_peer)}
            full = {s.name: (lambda s=s: s.host(dataset, answer)) for s in servers}
            alone = {s.name: s.encoded(dataset, answer) for s in servers}
            whole = _side_by_side(servers, full, runs)
            request = _side_by_side(servers, alone, runs)
        finally:
            for server in servers:
                server.stop()
    for server in servers:
        key = "ours" if server.name == "ours" else "peer"
        res[key] = {**whole[server.name], "request": request[server.name]}
        log(
            f"  hosting, {server.name}: {whole[server.name]['p50_ms']:.1f} ms from DataFrames, "
            f"{request[server.name]['p50_ms']:.1f} ms the request alone "
            f"({whole[server.name]['cpu_ms']:.1f} server CPU ms each)"
        )
    return res
