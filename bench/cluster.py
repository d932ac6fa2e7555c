"""The cluster rows of `make bench`: scored submissions/s from 8 clients on PostgreSQL, one
server process alone and two behind HAProxy (examples/deploy/haproxy.cfg as shipped, as the
CI topology test runs it), measured one after the other in the same run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from bench import ours
from bench.common import (
    PARQUET,
    ROOT,
    Proc,
    classify_data,
    free_port,
    postgres_database,
    to_parquet,
)
from bench.loadgen import load, measured

PG_ADMIN = os.environ.get(
    "CROWDSOURCE_BENCH_PG",
    os.environ.get("CROWDSOURCE_TEST_PG", "postgresql://127.0.0.1:5432/test"),
)
HAPROXY_CFG = ROOT / "examples" / "deploy" / "haproxy.cfg"


class Front:
    """The balancer, spoken to as bench.ours.Server is (register, host)."""

    register = ours.Server.register
    host = ours.Server.host

    def __init__(self, url: str) -> None:
        self.url, self.api, self.http = url, url + "/api/v1", requests.Session()


def _server(workdir: Path, db: str, *extra: str) -> ours.Server:
    """bench.ours.Server on the PostgreSQL database `db` instead of its SQLite file."""
    workdir.mkdir()
    srv = ours.Server(workdir, extra=list(extra))
    srv.proc.cmd = [f"--db={db}" if a.startswith("--db=") else a for a in srv.proc.cmd]
    return srv


def _haproxy(workdir: Path, servers: list[ours.Server]) -> tuple[Proc, Front]:
    """HAProxy with the shipped config on a free port, in front of `servers`; started."""
    port = free_port()
    env = {
        "CROWDSOURCE_BIND": f"127.0.0.1:{port}",
        "CROWDSOURCE_HAPROXY_SOCKET": str(workdir / "haproxy.sock"),
        "CROWDSOURCE_WEB1": f"127.0.0.1:{servers[0].port}",
        "CROWDSOURCE_WEB2": f"127.0.0.1:{servers[1].port}",
    }
    cmd = ["haproxy", "-db", "-f", str(HAPROXY_CFG)]
    proc = Proc(cmd, workdir / "haproxy.log", workdir, env={**os.environ, **env})
    front = Front(f"http://127.0.0.1:{port}")
    proc.start(front.api + "/competitions", timeout=60)
    return proc, front


def _rate(front: Any, pid: int | None, cfg: dict, log: Callable, label: str) -> dict:
    """8 clients POSTing one 1,000-row Parquet submission through `front` for cfg['dur'] s."""
    n = cfg["rows_small"]
    dataset, answer, preds = classify_data(n, seed=1)
    comp = front.host(front.register(f"{label}-host"), f"{label}: 1k rows", dataset, answer)
    tokens = [front.register(f"{label}-client-{i}") for i in range(8)]
    body = to_parquet(ours.prediction_frame(comp, preds))
    url = f"{front.api}/competitions/{comp['id']}/submissions"
    kw: dict[str, Any] = dict(
        method="POST",
        body=body,
        headers={"Content-Type": PARQUET},
        rotate_header=("Authorization", [f"Bearer {t}" for t in tokens]),
    )
    load(url, seconds=cfg["warmup_s"], connections=8, **kw)
    res, d = measured(pid, url, seconds=cfg["dur"], connections=8, **kw)
    log(f"  {label}: 8 clients {res.rps:.0f} submissions/s ({res.errors} errors)")
    return d


def run(cfg: dict, log: Callable) -> dict:
    """One server on PostgreSQL, then two behind HAProxy on another fresh database."""
    if shutil.which("haproxy") is None:
        return {"not_run": "HAProxy is not installed (make system-deps installs it)"}
    out: dict[str, Any] = {"rows": cfg["rows_small"]}
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as td:
        work = Path(td)
        with postgres_database() as db:
            one = _server(work / "one", db).start()
            try:
                out["one_pg"] = _rate(one, one.proc.pid, cfg, log, "one server on PostgreSQL")
            finally:
                one.stop()
        with postgres_database() as db:
            secret = f"--secret-file={work / 'shared.secret'}"
            servers = []
            for name in ("web1", "web2"):  # one after the other: the first one migrates
                servers.append(_server(work / name, db, secret).start())
            balancer: Proc | None = None
            try:
                balancer, front = _haproxy(work, servers)
                out["two_haproxy"] = _rate(front, None, cfg, log, "two servers behind HAProxy")
            finally:
                if balancer is not None:
                    balancer.stop()
                for srv in servers:
                    srv.stop()
    return out


def rows(res: dict, cell: Callable[[dict, str], str]) -> list[dict]:
    """The table's cluster rows (none when the workload was not run)."""
    if "cluster" not in res:
        return []
    c = res["cluster"]
    if "not_run" in c or "error" in c:
        reason = c.get("not_run") or f"failed: {c['error']}"
        return [_row("two servers behind HAProxy", f"not run ({reason})", "-", None)]
    one = (c.get("one_pg") or {}).get("rps")
    two = (c.get("two_haproxy") or {}).get("rps")
    ratio = two / one if one and two else None
    return [
        _row("one server process", cell(c, "one_pg"), "-", None),
        _row(
            "two server processes behind HAProxy (examples/deploy/haproxy.cfg)",
            cell(c, "two_haproxy"),
            f"{one:,.0f}/s one server (row above)" if one else "-",
            ratio,
        ),
    ]


def _row(what: str, ours_cell: str, floor: str, ratio: float | None) -> dict:
    return {
        "id": "1",
        "workload": f"Scored submissions/s, 1,000-row classify, 8 concurrent clients, on "
        f"PostgreSQL: {what}",
        "ours": ours_cell,
        "peer": "-",
        "floor": floor,
        "ratio": "-" if ratio is None else f"{ratio:.2f}x one server",
        "target": "(information; issue 16)",
        "met": "-",
    }
