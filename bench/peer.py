"""The published original (crowdsource 0.1.0): its environment, its server, its workloads.

The environment comes from ../shared/peer (requirements-peer.txt and run_peer_compat.py, see
its README): a venv at bench/.peer/venv, created once and reused. Where it cannot be set up,
the caller reports the original's column as "not run".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.common import ROOT, SHARED, Proc, classify_data, free_port
from bench.loadgen import load, measured

PEER_DIR = ROOT / "bench" / ".peer"
VENV = PEER_DIR / "venv"
PY = VENV / "bin" / "python"
REQS = SHARED / "peer" / "requirements-peer.txt"
LAUNCHER = SHARED / "peer" / "run_peer_compat.py"
STAMP = VENV / ".bench-ready"


def setup(log=print) -> Path:
    """Create bench/.peer/venv from requirements-peer.txt unless it is already there."""
    if not REQS.exists() or not LAUNCHER.exists():
        raise RuntimeError(f"peer files not found under {SHARED / 'peer'}")
    if STAMP.exists() and STAMP.read_text() == REQS.read_text():
        return PY
    t0 = time.monotonic()
    log(f"  creating the original's venv at {VENV} (one time, about 2 min) ...")
    PEER_DIR.mkdir(parents=True, exist_ok=True)
    base = sys.executable
    # the venv must be CPython 3.11 (the pins are for 3.11); prefer the system python3.11
    for cand in ("/usr/bin/python3.11", "/usr/local/bin/python3.11"):
        if Path(cand).exists():
            base = cand
            break
    subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
    r = subprocess.run(
        [str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQS)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        raise RuntimeError(
            "pip install -r requirements-peer.txt failed: " + (r.stderr or r.stdout)[-800:]
        )
    chk = subprocess.run(
        [str(PY), "-c", "import crowdsource.server"], capture_output=True, text=True
    )
    if chk.returncode != 0:
        raise RuntimeError("crowdsource 0.1.0 does not import: " + chk.stderr[-500:])
    STAMP.write_text(REQS.read_text())
    log(f"  venv ready in {time.monotonic() - t0:.0f}s")
    return PY


def start(workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    db = workdir / "peer.db"
    cmd = [
        str(PY),
        str(LAUNCHER),
        f"--port={port}",
        "--fix-scoring",
        f"--Crowdsource.sql_url=sqlite:///{db}",
        "--Crowdsource.debug=False",
    ]
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its package, not ours
    proc = Proc(cmd, workdir / "peer.log", workdir, env=env).start(url + "/api/v1/leaderboard")
    return proc, url


def _register(url: str, name: str) -> requests.Session:
    s = requests.Session()
    r = s.post(
        url + "/api/v1/register",
        json={"username": name, "password": "pw", "email": f"{name}@example.com"},
        timeout=30,
    )
    r.raise_for_status()
    return s


def run(cfg: dict, log=print) -> dict:
    """Measure the original: submissions/s (sequential, 8 clients) and leaderboard reads."""
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as td:
        proc, url = start(Path(td))
        try:
            res = _workloads(url, proc.pid, cfg, log)
        finally:
            proc.stop()
    return res


def _workloads(url: str, pid: int, cfg: dict, log) -> dict:
    api = url + "/api/v1"
    n = cfg["rows_small"]
    dataset, answer, preds = classify_data(n, seed=1)
    host = _register(url, "host")
    # the original scores with sklearn log_loss(answer.values, submission.values): no ids,
    # rows compared by position; so its answer and submission are the label / p1 columns
    spec = {
        "title": "bench",
        "type": "classify",
        "expiration": time.time() + 7200,
        "prize": 1,
        "metric": "logloss",
        "dataset": dataset.to_json(),
        "answer": answer[["label"]].to_json(),
    }
    r = host.post(api + "/competition", json={"spec": spec}, timeout=60)
    r.raise_for_status()
    cid = int(r.json()["competition_id"])
    part = _register(url, "alice")
    cookie = "; ".join(f"{k}={v}" for k, v in part.cookies.items())
    sub = preds.sort_values("id")[["p1"]].rename(columns={"p1": "label"}).reset_index(drop=True)
    import json

    body = json.dumps(
        {
            "competition_id": cid,
            "submission": {"competition_id": cid, "answer": sub.to_json(), "answer_type": "json"},
        }
    ).encode()
    r = part.post(api + "/submission", data=body, timeout=60)
    r.raise_for_status()
    score = r.json().get("score")
    log(f"  original: one submission scored {score}")
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    seq, seq_d = measured(
        pid,
        api + "/submission",
        seconds=cfg["dur"],
        connections=1,
        method="POST",
        body=body,
        headers=headers,
    )
    log(f"  original: sequential {seq.rps:.1f} submissions/s ({seq.errors} errors)")
    par, par_d = measured(
        pid,
        api + "/submission",
        seconds=cfg["dur"],
        connections=8,
        method="POST",
        body=body,
        headers=headers,
    )
    log(f"  original: 8 clients {par.rps:.1f} submissions/s ({par.errors} errors)")
    stored = 1 + seq.requests + par.requests
    lb_lat = load(api + "/leaderboard", seconds=cfg["dur_read"], connections=1)
    lb_tp, lb_tp_d = measured(pid, api + "/leaderboard", seconds=cfg["dur_read"], connections=10)
    log(
        f"  original: leaderboard at {stored} submissions: p50 {lb_lat.p50_ms:.1f} ms, "
        f"{lb_tp.rps:.1f} reads/s"
    )
    return {
        "rows": n,
        "score": score,
        "seq": seq_d,
        "par8": par_d,
        "lb_stored": stored,
        "lb_latency": lb_lat.as_dict(),
        "lb_throughput": lb_tp_d,
    }
