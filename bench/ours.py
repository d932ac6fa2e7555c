"""Our server's workloads (issue 6, items 1-6), against the REST API of docs/api.md."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from bench.common import (
    PARQUET,
    Proc,
    classify_data,
    free_port,
    proc_status,
    reset_peak_rss,
    to_parquet,
    wait_idle,
)
from bench.loadgen import load, measured, percentile


class Server:
    """`python -m crowdsource.server` on a SQLite file in a temporary folder, or on the
    PostgreSQL database `db` (a SQLAlchemy URL) when given."""

    def __init__(
        self, workdir: Path, extra: list[str] | None = None, *, db: str | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = self.url + "/api/v1"
        cmd = [
            sys.executable,
            "-m",
            "crowdsource.server",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--db={db or workdir / 'bench.db'}",
            # the per-participant write limit guards against abuse; the bench measures capacity
            "--CrowdsourceServer.write_rate=0",
            *(extra or []),
        ]
        self.proc = Proc(cmd, workdir / "server.log", workdir, project_path=True)
        self.http = requests.Session()
        # the database's own server processes now (PostgreSQL backends), for their CPU
        self.database_pids: Callable[[], list[int]] | None = None

    def start(self) -> Server:
        self.http = requests.Session()  # no pooled connection to a previous process
        self.proc.start(self.api + "/competitions", timeout=60)
        wait_idle(self.proc.pid)  # the scoring pool starts after the API answers
        return self

    def stop(self) -> None:
        self.proc.stop()

    def pids(self) -> list[int]:
        """The server and its scoring pool (forkserver and workers)."""
        import psutil

        main = psutil.Process(self.proc.pid)
        return [main.pid] + [c.pid for c in main.children(recursive=True)]

    def register(self, name: str) -> str:
        r = self.http.post(self.api + "/participants", json={"name": name}, timeout=30)
        _check(r, 201)
        return str(r.json()["token"])

    def host(
        self, token: str, title: str, dataset: pd.DataFrame, answer: pd.DataFrame, **extra: Any
    ) -> dict:
        body = {
            "title": title,
            "type": "classify",
            "metric": "logloss",
            "id_column": "id",
            "targets": ["label"],
            "dataset": b64_frame(dataset),
            "answer": b64_frame(answer),
            **extra,
        }
        r = self.http.post(
            self.api + "/competitions",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            timeout=120,
        )
        _check(r, 201)
        return dict(r.json())

    def submit(self, cid: int, token: str, body: bytes, ctype: str = PARQUET) -> dict:
        r = self.http.post(
            f"{self.api}/competitions/{cid}/submissions",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
            timeout=300,
        )
        _check(r, 201)
        return dict(r.json())

    def board(self, cid: int) -> dict:
        r = self.http.get(f"{self.api}/competitions/{cid}/leaderboard", timeout=60)
        _check(r, 200)
        return dict(r.json())

    def stored(self, cid: int) -> int:
        """Submissions counted on the public board of a competition."""
        return sum(int(e["submissions"]) for e in self.board(cid)["entries"])


def _check(r: requests.Response, status: int) -> None:
    if r.status_code != status:
        raise RuntimeError(f"{r.request.method} {r.url}: {r.status_code} {r.text[:300]}")


def b64_frame(df: pd.DataFrame) -> dict:
    return {"format": "parquet", "data": base64.b64encode(to_parquet(df)).decode()}


def prediction_frame(comp: dict, preds: pd.DataFrame) -> pd.DataFrame:
    """Our shuffled p1 predictions in the competition's prediction columns."""
    cols = comp.get("prediction_columns") or [str(c) for c in comp.get("classes") or [0, 1]]
    if len(cols) == 2:
        return pd.DataFrame(
            {
                "id": preds["id"].to_numpy(),
                cols[0]: 1 - preds["p1"].to_numpy(),
                cols[1]: preds["p1"].to_numpy(),
            }
        )
    return pd.DataFrame({"id": preds["id"].to_numpy(), cols[0]: preds["p1"].to_numpy()})


def _bearer(tokens: list[str]) -> tuple[str, list[str]]:
    return ("Authorization", [f"Bearer {t}" for t in tokens])


# ----------------------------------------------------------------------------- workload 1


def submissions_per_second(srv: Server, cfg: dict, log: Callable) -> dict:
    n = cfg["rows_small"]
    dataset, answer, preds = classify_data(n, seed=1)
    host = srv.register("w1-host")
    comp = srv.host(host, "w1: 1k rows", dataset, answer)
    tokens = [srv.register(f"w1-client-{i}") for i in range(8)]
    sub = prediction_frame(comp, preds)
    pq_body = to_parquet(sub)
    json_body = json.dumps(
        {"predictions": {"columns": list(sub.columns), "data": sub.to_numpy().tolist()}}
    ).encode()
    first = srv.submit(comp["id"], tokens[0], pq_body)
    log(f"  ours: one 1k-row submission: state {first['state']}, score {first['public_score']}")
    url = f"{srv.api}/competitions/{comp['id']}/submissions"
    hp = {"Content-Type": PARQUET}
    load(
        url,
        seconds=cfg["warmup_s"],
        connections=2,
        method="POST",
        body=pq_body,
        headers=hp,
        rotate_header=_bearer(tokens),
    )  # warm-up
    seq, seq_d = measured(
        srv.proc.pid,
        url,
        database=srv.database_pids,
        seconds=cfg["dur"],
        connections=1,
        method="POST",
        body=pq_body,
        headers=hp,
        rotate_header=_bearer(tokens[:1]),
    )
    log(f"  ours: sequential {seq.rps:.0f} submissions/s (Parquet, {seq.errors} errors)")
    par, par_d = measured(
        srv.proc.pid,
        url,
        database=srv.database_pids,
        seconds=cfg["dur"],
        connections=8,
        method="POST",
        body=pq_body,
        headers=hp,
        rotate_header=_bearer(tokens),
    )
    log(f"  ours: 8 clients {par.rps:.0f} submissions/s (Parquet, {par.errors} errors)")
    hj = {"Content-Type": "application/json"}
    if cfg.get("skip_json"):
        return {
            "rows": n,
            "competition": comp["id"],
            "seq": seq_d,
            "par8": par_d,
            "body_bytes_parquet": len(pq_body),
        }
    seq_json, seq_json_d = measured(
        srv.proc.pid,
        url,
        seconds=cfg["dur"],
        connections=1,
        method="POST",
        body=json_body,
        headers=hj,
        rotate_header=_bearer(tokens[:1]),
    )
    par_json, par_json_d = measured(
        srv.proc.pid,
        url,
        seconds=cfg["dur"],
        connections=8,
        method="POST",
        body=json_body,
        headers=hj,
        rotate_header=_bearer(tokens),
    )
    log(
        f"  ours: JSON split frame: sequential {seq_json.rps:.0f}/s, 8 clients {par_json.rps:.0f}/s"
    )
    stored = srv.stored(comp["id"])
    return {
        "rows": n,
        "competition": comp["id"],
        "seq": seq_d,
        "par8": par_d,
        "seq_json": seq_json_d,
        "par8_json": par_json_d,
        "body_bytes_parquet": len(pq_body),
        "body_bytes_json": len(json_body),
        "stored_after": stored,
    }


# ----------------------------------------------------------------------------- workload 3


def _fill(
    srv: Server,
    cid: int,
    tokens: list[str],
    body: bytes,
    target: int,
    budget_s: float,
    log: Callable,
) -> int:
    """POST small submissions until the board counts `target` (or the budget runs out)."""
    url = f"{srv.api}/competitions/{cid}/submissions"
    have = srv.stored(cid)
    t_end = time.monotonic() + budget_s
    rate = 500.0
    while have < target and time.monotonic() < t_end:
        left = target - have
        secs = max(1.0, min(left / rate * 1.02, t_end - time.monotonic()))
        t0 = time.monotonic()
        res = load(
            url,
            seconds=secs,
            connections=8,
            method="POST",
            body=body,
            headers={"Content-Type": PARQUET},
            rotate_header=_bearer(tokens),
            limit=left,
        )
        now = srv.stored(cid)
        rate = max(50.0, (now - have) / max(time.monotonic() - t0, 0.1))
        if now == have:
            raise RuntimeError(f"filling made no progress ({res.errors} errors)")
        have = now
    log(f"  ours: {have} submissions stored (filling at about {rate:.0f}/s)")
    return have


def seed_submissions(db: Path, cid: int, count: int) -> int:
    """Bulk-insert `count` scored submissions into a stopped server's SQLite file.

    Copies of one real submission of the competition (same blob, score and history row),
    spread over the participants already on its board, and the board's entries updated as the
    server's own `leaderboards.apply` would: more submissions, same best scores. Uses the
    server's models, so it follows the schema; returns the stored count afterwards.
    """
    from sqlalchemy import create_engine, func, insert, select, update
    from sqlalchemy.orm import Session

    from crowdsource.server.storage.tables import Entry, Score, Submission

    engine = create_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s, s.begin():
            tpl = s.scalars(
                select(Submission)
                .where(Submission.competition_id == cid, Submission.state == "scored")
                .order_by(Submission.id)
                .limit(1)
            ).one()
            hist = s.scalars(select(Score).where(Score.submission_id == tpl.id)).first()
            parts = sorted(
                s.scalars(
                    select(Entry.participant_id).where(
                        Entry.competition_id == cid, Entry.board == "public"
                    )
                )
            )
            top = s.scalar(select(func.max(Submission.id))) or 0
            step = 20_000
            for start in range(0, count, step):
                n = min(step, count - start)
                s.execute(
                    insert(Submission),
                    [
                        {
                            "competition_id": cid,
                            "participant_id": parts[(start + i) % len(parts)],
                            "state": "scored",
                            "public_score": tpl.public_score,
                            "private_score": tpl.private_score,
                            "predictions_blob_id": tpl.predictions_blob_id,
                            "created_at": tpl.created_at,
                            "scored_at": tpl.scored_at,
                        }
                        for i in range(n)
                    ],
                )
            new_ids = list(
                s.scalars(select(Submission.id).where(Submission.id > top).order_by(Submission.id))
            )
            for start in range(0, len(new_ids), step):
                s.execute(
                    insert(Score),
                    [
                        {
                            "submission_id": sid,
                            "public_score": tpl.public_score,
                            "private_score": tpl.private_score,
                            "answer_rows": hist.answer_rows if hist else 0,
                            "at": tpl.scored_at or tpl.created_at,
                        }
                        for sid in new_ids[start : start + step]
                    ],
                )
            per: dict[int, int] = {}
            for i in range(count):
                per[parts[i % len(parts)]] = per.get(parts[i % len(parts)], 0) + 1
            for pid, n in per.items():
                s.execute(
                    update(Entry)
                    .where(Entry.competition_id == cid, Entry.participant_id == pid)
                    .values(submissions=Entry.submissions + n)
                )
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(Submission)
                    .where(Submission.competition_id == cid)
                )
                or 0
            )
    finally:
        engine.dispose()


def leaderboard_reads(workdir: Path, cfg: dict, log: Callable, budget_s: float) -> dict:
    """Workload 3 on its own server: the first level filled through the API, the next ones
    bulk-inserted into its database (server stopped, then restarted and warmed)."""
    srv = Server(workdir).start()
    try:
        dataset, answer, preds = classify_data(10, seed=3)
        host = srv.register("w3-host")
        comp = srv.host(host, "w3: leaderboard", dataset, answer)
        cid = comp["id"]
        tokens = [srv.register(f"w3-p{i:03d}") for i in range(cfg["board_participants"])]
        body = to_parquet(prediction_frame(comp, preds))
        url = f"{srv.api}/competitions/{cid}/leaderboard"
        out: dict = {"participants": len(tokens), "levels": []}
        t_start = time.monotonic()
        for k, level in enumerate(cfg["board_levels"]):
            have = srv.stored(cid)
            how = "API"
            if k == 0:
                left = budget_s - (time.monotonic() - t_start)
                stored = _fill(srv, cid, tokens, body, level, left, log)
            else:
                srv.stop()
                t0 = time.monotonic()
                stored = seed_submissions(workdir / "bench.db", cid, level - have)
                how = "bulk insert"
                log(
                    f"  ours: bulk-inserted {level - have:,} submissions in "
                    f"{time.monotonic() - t0:.1f}s"
                )
                srv.start()
                stored_api = srv.stored(cid)
                if stored_api != stored:
                    raise RuntimeError(f"board counts {stored_api} submissions, database {stored}")
            srv.board(cid)  # the first read after a change (or a restart) builds the board
            load(url, seconds=cfg["warmup_s"], connections=cfg["read_conns"])  # warm-up
            tp, tp_d = measured(
                srv.proc.pid, url, seconds=cfg["dur_read"], connections=cfg["read_conns"]
            )
            lat = load(url, seconds=cfg["dur_read"], connections=1)
            log(
                f"  ours: leaderboard at {stored:,} submissions: {tp.rps:.0f} reads/s, "
                f"p50 {lat.p50_ms:.2f} ms, p99 {lat.p99_ms:.2f} ms (1 client)"
            )
            out["levels"].append(
                {
                    "target": level,
                    "stored": stored,
                    "how": how,
                    "throughput": tp_d,
                    "latency": lat.as_dict(),
                    "reached": stored >= level,
                }
            )
            if stored < level:
                break
            if time.monotonic() - t_start > budget_s:
                log("  ours: workload 3 out of time budget")
                break
        return out
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- workloads 2, 6, 5


def _mem(pids: list[int]) -> dict[int, dict[str, int]]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = proc_status(pid)
    return out


def big_submission(srv: Server, cfg: dict, log: Callable) -> dict:
    """Workload 2 (time to accept and score), 6 (peak memory) and 5 (reads meanwhile)."""
    n = cfg["rows_big"]
    dataset, answer, preds = classify_data(n, seed=2)
    host = srv.register("w2-host")
    t0 = time.perf_counter()
    comp = srv.host(host, "w2: big", dataset, answer)
    create_s = time.perf_counter() - t0
    log(f"  ours: hosted a {n:,}-row competition in {create_s:.2f}s")
    sub = prediction_frame(comp, preds)
    body = to_parquet(sub)
    data_bytes = int(sub.memory_usage(deep=True, index=False).sum())
    tokens = [srv.register(f"w2-p{i}") for i in range(cfg["big_repeats"] + 2)]
    cid = comp["id"]

    wait_idle(srv.proc.pid)  # hosting loads the answer into the scoring process: not counted
    pids = srv.pids()
    before = _mem(pids)
    resettable = all(reset_peak_rss(pid) for pid in pids)

    def one(token: str, count_before: int) -> dict:
        t0 = time.perf_counter()
        res = srv.submit(cid, token, body)
        t_ack = time.perf_counter() - t0
        while True:  # the board shows it (the 201 should already imply that)
            b = srv.board(cid)
            if sum(int(e["submissions"]) for e in b["entries"]) > count_before:
                break
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("the big submission never reached the leaderboard")
            time.sleep(0.005)
        return {
            "ack_s": t_ack,
            "board_s": time.perf_counter() - t0,
            "state": res["state"],
            "score": res["public_score"],
        }

    runs = [one(tokens[0], 0)]  # cold: the scoring process loads the answer, first use
    after_cold = _mem(srv.pids())
    for pid in after_cold:
        reset_peak_rss(pid)
    for i in range(1, cfg["big_repeats"] + 1):
        runs.append(one(tokens[i], i))
    after = _mem(srv.pids())
    cold, warm = runs[0], runs[1:]
    med = statistics.median(r["board_s"] for r in warm)
    log(
        f"  ours: {n:,}-row submission: cold {cold['board_s']:.2f}s, then median "
        f"{med:.2f}s to scored and on the board (score {warm[-1]['score']})"
    )

    main_pid = srv.proc.pid

    def rise(start: dict, end: dict, peak_from: list[dict]) -> dict:
        """Peak (max VmHWM seen) over the RSS at `start`, per process and summed."""
        per = {}
        for pid, m in end.items():
            peak = max([m.get("VmHWM", 0)] + [p.get(pid, {}).get("VmHWM", 0) for p in peak_from])
            rss0 = start.get(pid, {}).get("VmRSS", 0)  # a process started meanwhile: from 0
            per[pid] = {"rss_before": rss0, "peak": peak, "delta": max(0, peak - rss0)}
        main = per.get(main_pid, {"delta": 0, "peak": 0})
        workers = sum(v["delta"] for p, v in per.items() if p != main_pid)
        return {
            "main_delta": main["delta"],
            "main_peak": main["peak"],
            "workers_delta": workers,
            "total_delta": main["delta"] + workers,
            "processes": per,
        }

    mem = {
        "data_bytes": data_bytes,
        "body_bytes": len(body),
        "hwm_reset": resettable,
        **rise(before, after, [after_cold]),
        "warm": rise(after_cold, after, []),
    }
    log(
        f"  ours: memory: main +{mem['main_delta'] / 2**20:.0f} MiB (peak "
        f"{mem['main_peak'] / 2**20:.0f} MiB), scoring workers +"
        f"{mem['workers_delta'] / 2**20:.0f} MiB; warm submissions only: +"
        f"{mem['warm']['total_delta'] / 2**20:.0f} MiB; data {data_bytes / 2**20:.0f} MiB"
    )

    # workload 5: reads of this board, paced, while one more big submission goes in
    reads = _reads_during(
        srv, cid, lambda: srv.submit(cid, tokens[-1], body), cfg["read_interval_s"]
    )
    log(
        f"  ours: leaderboard reads during a {n:,}-row upload: p50 {reads['p50_ms']:.1f} ms, "
        f"p99 {reads['p99_ms']:.1f} ms, max {reads['max_ms']:.1f} ms ({reads['count']} reads)"
    )
    return {
        "rows": n,
        "create_s": create_s,
        "cold": cold,
        "warm": warm,
        "median_s": med,
        "median_ack_s": statistics.median(r["ack_s"] for r in warm),
        "memory": mem,
        "reads_during": reads,
    }


def _reads_during(srv: Server, cid: int, work: Callable[[], Any], interval: float) -> dict:
    """Leaderboard reads every `interval` s on one keep-alive connection while `work` runs."""
    lat: list[float] = []
    done = threading.Event()
    errors = [0]

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        path = f"/api/v1/competitions/{cid}/leaderboard"
        nxt = time.perf_counter()
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors[0] += 1
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            lat.append((time.perf_counter() - t0) * 1e3)
            nxt += interval
            time.sleep(max(0.0, nxt - time.perf_counter()))
        conn.close()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    time.sleep(0.2)  # some reads before the upload starts
    t0 = time.perf_counter()
    work()
    work_s = time.perf_counter() - t0
    time.sleep(0.1)
    done.set()
    th.join(10)
    return {
        "count": len(lat),
        "errors": errors[0],
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
        "max_ms": max(lat or [0.0]),
        "work_s": work_s,
        "interval_ms": interval * 1e3,
    }


# ----------------------------------------------------------------------------- workload 4


class Observer:
    """A WebSocket on /api/v1/events that records when a participant appears on a board."""

    def __init__(self, srv: Server) -> None:
        import websocket

        self.ws = websocket.create_connection(
            srv.url.replace("http", "ws", 1) + "/api/v1/events", timeout=30
        )
        first = json.loads(self.ws.recv())
        assert first["type"] == "hello", first
        self.cond = threading.Condition()
        self.seen: dict[int, float] = {}  # competition id -> when our entry showed
        self.created: dict[int, float] = {}
        self.participant: int | None = None
        self.closed = False
        self.th = threading.Thread(target=self._run, daemon=True)
        self.th.start()

    def _run(self) -> None:
        while not self.closed:
            try:
                msg = self.ws.recv()
            except Exception:
                return
            now = time.perf_counter()
            try:
                ev = json.loads(msg)
            except ValueError:
                continue
            cid = ev.get("competition_id")
            with self.cond:
                if ev["type"] == "competition.created":
                    self.created.setdefault(cid, now)
                elif ev["type"] == "leaderboard.changed" and self._lists_us(ev.get("data") or {}):
                    self.seen.setdefault(cid, now)
                self.cond.notify_all()

    def _lists_us(self, data: dict) -> bool:
        """A board change notice that lists our participant: the notice of a push (listeners of
        every competition get `{version, total}`; only our competitor submits to these
        competitions, so a total of one or more is its entry), or a whole board (0.1.0's)."""
        if "entries" not in data:
            return int(data.get("total") or 0) >= 1
        return any(e["participant"]["id"] == self.participant for e in data["entries"])

    def wait(self, cid: int, timeout: float) -> float | None:
        with self.cond:
            self.cond.wait_for(lambda: cid in self.seen, timeout)
            return self.seen.get(cid)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.ws.close()


def _client_competitor(srv: Server, token: str) -> tuple[Any, float]:
    """crowdsource.client's compete(); returns (closer, seconds compete() took to return)."""
    from crowdsource.client import Client

    client = Client(srv.url, token=token, progress=False)

    def fn(competition: Any) -> pd.DataFrame:
        ds = competition.dataset
        cols = competition.raw.get("prediction_columns") or [str(c) for c in competition.classes]
        pred = pd.DataFrame({competition.id_column: ds[competition.id_column].to_numpy()})
        for c in cols:
            pred[c] = 1.0 / len(cols)
        return pred

    t0 = time.perf_counter()
    competitor = client.compete("classify", fn, name="bench")
    returned = time.perf_counter() - t0
    if hasattr(competitor, "wait_connected"):
        competitor.wait_connected(10)
    time.sleep(0.2)  # let its first resync (after hello) finish
    return client, returned


def auto_compete(srv: Server, cfg: dict, log: Callable) -> dict:
    dataset, answer, _ = classify_data(cfg["rows_small"], seed=4)
    host = srv.register("w4-host")
    me = srv.http.post(srv.api + "/participants", json={"name": "w4-competitor"}, timeout=30)
    _check(me, 201)
    token, pid = me.json()["token"], me.json()["id"]
    obs = Observer(srv)
    obs.participant = pid
    how = "crowdsource.client Client.compete()"
    closer, returned = _client_competitor(srv, token)
    from_send, from_ack = [], []
    body_base = {
        "title": "w4",
        "type": "classify",
        "metric": "logloss",
        "id_column": "id",
        "targets": ["label"],
        "dataset": b64_frame(dataset),
        "answer": b64_frame(answer),
    }
    misses = 0
    try:
        for i in range(cfg["compete_runs"] + 1):
            body = json.dumps({**body_base, "title": f"w4 #{i}"}).encode()
            t0 = time.perf_counter()
            r = srv.http.post(
                srv.api + "/competitions",
                data=body,
                timeout=60,
                headers={"Authorization": f"Bearer {host}", "Content-Type": "application/json"},
            )
            t_ack = time.perf_counter()
            _check(r, 201)
            seen = obs.wait(r.json()["id"], timeout=30)
            if seen is None:
                misses += 1
                continue
            if i == 0:
                continue  # warm-up
            from_send.append((seen - t0) * 1e3)
            from_ack.append((seen - t_ack) * 1e3)
    finally:
        closer.close()
        obs.close()
    res = {
        "how": how,
        "runs": len(from_send),
        "misses": misses,
        "compete_returned_ms": None if returned is None else returned * 1e3,
        "p50_ms": percentile(from_send, 50),
        "p95_ms": percentile(from_send, 95),
        "p50_from_201_ms": percentile(from_ack, 50),
        "p95_from_201_ms": percentile(from_ack, 95),
        "rows": cfg["rows_small"],
    }
    log(
        f"  ours: auto-compete ({how}): p50 {res['p50_ms']:.1f} ms, p95 {res['p95_ms']:.1f} ms "
        f"from POST sent ({res['p50_from_201_ms']:.1f} / {res['p95_from_201_ms']:.1f} ms from "
        f"its 201); compete() returned in {res['compete_returned_ms'] or float('nan'):.1f} ms"
    )
    return res
