"""Turn one run's results into BENCHMARKS.md: figures, ratios, targets met or not."""

from __future__ import annotations

from typing import Any

from bench import cluster, firstboard, firstpaint, live, widget_reload

NOT_RUN = "not run"


def _g(d: Any, *path: str, default: Any = None) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _cpu(d: Any) -> str:
    ms = _g(d, "cpu_ms")
    return "" if ms is None else f" ({ms:,.2f} CPU ms each)"


def _db_cpu(d: Any) -> str:
    ms = _g(d, "db_cpu_ms")
    return "" if ms is None else f" + {ms:,.2f} CPU ms each in PostgreSQL's processes"


def _cpu_ratio(a: Any, b: Any, fmt: str) -> str:
    """b's CPU per request over a's: how many of a fit in the CPU one b needs."""
    x, y = _g(a, "cpu_ms"), _g(b, "cpu_ms")
    return "" if not x or not y else "; by CPU: " + fmt.format(y / x)


def _met(ok: bool | None) -> str:
    return "-" if ok is None else ("**yes**" if ok else "**no**")


def _err(res: dict, key: str) -> str | None:
    v = res.get(key)
    if v is None:
        return (res.get("server_error") and f"failed: {res['server_error']}") or "not run"
    if "error" in v:
        return f"failed: {v['error']}"
    return None


def rows(res: dict) -> list[dict]:
    """One dict per table row: workload, ours, original, floor, ratio, target, met."""
    out: list[dict] = []
    peer = res.get("peer") or {}
    peer_reason = peer.get("not_run") or (peer.get("error") and f"failed: {peer['error']}")

    def peer_cell(v: str) -> str:
        return f"{NOT_RUN} ({peer_reason})" if peer_reason else v

    # 1
    for w1_key, key, label, min_abs in (
        ("w1", "seq", "sequential", None),
        ("w1", "par8", "8 concurrent clients", 1000),
        ("w1_multi", "par8", "8 concurrent clients, `--processes 2`", 1000),
    ):
        w1 = res.get(w1_key) or {}
        e1 = _err(res, w1_key)
        if w1_key == "w1_multi" and w1_key not in res:
            continue  # an older run, before the row existed
        ours = _g(w1, key, "rps")
        theirs = _g(peer, key, "rps")
        posts = _g(res, "hello", "post", key, "rps")
        ratio = ours / theirs if ours and theirs else None
        ok = None
        tgt = "≥ 20x original"
        if ratio is not None:
            ok = ratio >= 20
        if min_abs:
            tgt += f" and ≥ {min_abs:,}/s"
            if ours is not None:
                ok = (ok is not False) and ours >= min_abs
        out.append(
            {
                "id": "1",
                "workload": f"Scored submissions/s, {w1.get('rows', 1000):,}-row "
                f"classify, {label} (raw Parquet body)",
                "ours": e1 or f"{_num(ours)}/s{_cpu(w1.get(key))}",
                "peer": peer_cell(
                    f"{_num(theirs, '{:,.1f}')}/s{_cpu(peer.get(key))} (JSON, its only form)"
                ),
                "floor": f"{_num(posts)}/s{_cpu(_g(res, 'hello', 'post', key))} (Tornado "
                "answering a POST of the same body, unscored and unstored)"
                if posts
                else "-",
                "ratio": _num(ratio, "{:,.1f}x original")
                + _cpu_ratio(w1.get(key), peer.get(key), "{:,.1f}x")
                + (f"; {_num(ours / posts * 100)}% of the floor" if ours and posts else ""),
                "target": tgt,
                "met": _met(ok),
            }
        )
    out.extend(_postgres_rows(res))
    w1 = res.get("w1") or {}
    e1 = _err(res, "w1")
    if not e1 and "seq_json" in w1:
        out.append(
            {
                "id": "1",
                "workload": "…same, JSON split-frame body: sequential / 8 clients",
                "ours": f"{_num(_g(w1, 'seq_json', 'rps'))}/s / "
                f"{_num(_g(w1, 'par8_json', 'rps'))}/s",
                "peer": "-",
                "floor": "-",
                "ratio": (
                    _num(_g(w1, "seq_json", "rps") / _g(peer, "seq", "rps"), "{:,.1f}x")
                    + " / "
                    + _num(_g(w1, "par8_json", "rps") / _g(peer, "par8", "rps"), "{:,.1f}x")
                    + " original"
                )
                if _g(peer, "seq", "rps")
                else "-",
                "target": "(information)",
                "met": "-",
            }
        )
    # 2
    w2 = res.get("w2") or {}
    e2 = _err(res, "w2")
    fl = _g(res, "floor_score", "seconds")
    med = w2.get("median_s")
    ratio2 = med / fl if med and fl else None
    rows_big = w2.get("rows", res.get("config", {}).get("rows_big", 1_000_000))
    out.append(
        {
            "id": "2",
            "workload": f"Accept and score one {rows_big:,}-row submission "
            "(upload, validate, align, metric, store, on the leaderboard), median of "
            f"{len(w2.get('warm', [])) or '-'} after one cold",
            "ours": e2
            or f"{med * 1e3:,.0f} ms (cold {w2['cold']['board_s'] * 1e3:,.0f} ms; "
            f"201 after {w2['median_ack_s'] * 1e3:,.0f} ms)",
            "peer": f"{NOT_RUN} (scores by row position, no ids; posting a 524k-row "
            "competition alone froze it 9-10 s)",
            "floor": _num(fl and fl * 1e3, "{:,.0f} ms") + " (read Parquet, align by id, "
            "numpy log loss, in-process)",
            "ratio": _num(ratio2, "{:,.1f}x floor"),
            "target": "≤ 3x floor",
            "met": _met(None if ratio2 is None else ratio2 <= 3),
        }
    )
    # 3
    w3 = res.get("w3") or {}
    e3 = _err(res, "w3")
    hello = _g(res, "hello", "throughput", "rps")
    hello_lat = _g(res, "hello", "latency")
    levels = w3.get("levels", [])
    for lv in levels:
        rps = _g(lv, "throughput", "rps")
        share = rps / hello if rps and hello else None
        peer_txt = "-"
        if lv is levels[0]:
            peer_txt = peer_cell(
                f"{_num(_g(peer, 'lb_throughput', 'rps'), '{:,.1f}')} reads/s; p50 "
                f"{_num(_g(peer, 'lb_latency', 'p50_ms'), '{:,.1f}')} ms at "
                f"{_num(peer.get('lb_stored'))} submissions (returns the top 100)"
            )
        reached = "" if lv.get("reached", True) else f" (only {lv['stored']:,} reached in budget)"
        reached += " [bulk-inserted]" if lv.get("how") == "bulk insert" else " [via the API]"
        out.append(
            {
                "id": "3",
                "workload": f"Leaderboard reads at {lv['stored']:,} stored "
                f"submissions{reached} ({w3.get('participants')} participants)",
                "ours": f"{_num(rps)} reads/s{_cpu(lv.get('throughput'))}; "
                f"p50 {_g(lv, 'latency', 'p50_ms'):.2f} ms, "
                f"p99 {_g(lv, 'latency', 'p99_ms'):.2f} ms",
                "peer": peer_txt,
                "floor": f"{_num(hello)} req/s hello-world"
                f"{_cpu(_g(res, 'hello', 'throughput'))}, p50 "
                f"{_num(_g(hello_lat, 'p50_ms'), '{:.2f}')} ms",
                "ratio": _num(share and share * 100, "{:.0f}% of hello-world")
                + _cpu_ratio(lv.get("throughput"), _g(res, "hello", "throughput"), "{:.0%}"),
                "target": "≥ 40% of hello-world",
                "met": _met(None if share is None else share >= 0.4),
            }
        )
    if e3 and not levels:
        out.append(
            {
                "id": "3",
                "workload": "Leaderboard reads",
                "ours": e3,
                "peer": "-",
                "floor": f"{_num(hello)} req/s hello-world",
                "ratio": "-",
                "target": "≥ 40% of hello-world",
                "met": "-",
            }
        )
    if len(levels) >= 2:
        a, b = levels[0], levels[-1]
        r = _g(b, "latency", "p50_ms") / _g(a, "latency", "p50_ms")
        out.append(
            {
                "id": "3",
                "workload": f"Leaderboard p50 at {b['stored']:,} vs {a['stored']:,} submissions",
                "ours": f"{_g(b, 'latency', 'p50_ms'):.2f} ms vs "
                f"{_g(a, 'latency', 'p50_ms'):.2f} ms",
                "peer": "52 → 217 ms from 400 to 2,000 (its README)",
                "floor": "-",
                "ratio": f"{r:.2f}x",
                "target": "≤ 1.5x (at 100,000 vs 1,000)",
                "met": _met(r <= 1.5 if b.get("target", 0) >= 100_000 else None),
            }
        )
    # 4
    w4 = res.get("w4") or {}
    e4 = _err(res, "w4")
    p50 = w4.get("p50_ms")
    out.append(
        {
            "id": "4",
            "workload": "Auto-compete: competition POSTed until the competitor's "
            f"submission is on the leaderboard ({w4.get('runs', '-')} runs, "
            f"{w4.get('rows', '-')} rows; {w4.get('how', '')})",
            "ours": e4
            or (
                f"p50 {p50:.1f} ms, p95 {w4['p95_ms']:.1f} ms (from its 201: "
                f"{w4['p50_from_201_ms']:.1f} / {w4['p95_from_201_ms']:.1f} ms); "
                f"compete() returned in "
                f"{_num(w4.get('compete_returned_ms'), '{:.1f}')} ms"
            ),
            "peer": f"{NOT_RUN} (no event stream)",
            "floor": "-",
            "ratio": "-",
            "target": "p50 ≤ 50 ms",
            "met": _met(None if p50 is None else p50 <= 50),
        }
    )
    # 5
    rd = w2.get("reads_during") or {}
    out.append(
        {
            "id": "5",
            "workload": f"Leaderboard reads (every {rd.get('interval_ms', 10):.0f} "
            f"ms, 1 client) while a {rows_big:,}-row submission is uploaded and scored",
            "ours": e2
            or f"p99 {rd['p99_ms']:.1f} ms (p50 {rd['p50_ms']:.1f}, max "
            f"{rd['max_ms']:.1f}; {rd['count']} reads over "
            f"{rd['work_s']:.2f} s)",
            "peer": f"{NOT_RUN} (answers nothing for 9-10 s during a 524k-row post)",
            "floor": "-",
            "ratio": "-",
            "target": "p99 ≤ 50 ms",
            "met": _met(rd.get("p99_ms") <= 50 if rd else None),
        }
    )
    # 6
    mem = w2.get("memory") or {}
    if mem:
        tot = mem["total_delta"]
        r6 = tot / mem["data_bytes"]
        warm = mem.get("warm", {}).get("total_delta") or 0
        out.append(
            {
                "id": "6",
                "workload": "Server peak memory, first submission to a competition and the "
                "ones after it (VmHWM rise over RSS before it, server + scoring processes; "
                "the answer is loaded into the scoring cache when the competition is hosted)",
                "ours": f"+{tot / 2**20:,.0f} MiB (main +{mem['main_delta'] / 2**20:,.0f}, "
                f"scoring +{mem['workers_delta'] / 2**20:,.0f}; main peak "
                f"{mem['main_peak'] / 2**20:,.0f} MiB)",
                "peer": f"{NOT_RUN}",
                "floor": f"{mem['data_bytes'] / 2**20:,.0f} MiB "
                "(the submission's DataFrame in memory)",
                "ratio": f"{r6:.1f}x data",
                "target": "≤ 4x the data",
                "met": _met(r6 <= 4),
            }
        )
        out.append(
            {
                "id": "6",
                "workload": "…each later submission: peak rise over the RSS after the first",
                "ours": f"+{warm / 2**20:,.0f} MiB",
                "peer": NOT_RUN,
                "floor": f"{mem['data_bytes'] / 2**20:,.0f} MiB",
                "ratio": f"{warm / mem['data_bytes']:.1f}x data",
                "target": "≤ 4x the data",
                "met": _met(warm / mem["data_bytes"] <= 4),
            }
        )
    else:
        out.append(
            {
                "id": "6",
                "workload": "Server peak memory during workload 2",
                "ours": e2 or "-",
                "peer": NOT_RUN,
                "floor": "-",
                "ratio": "-",
                "target": "≤ 4x the data",
                "met": "-",
            }
        )
    out.append(_hosting_row(res, peer_cell))
    out.extend(cluster.rows(res, lambda c, key: f"{_num(_g(c, key, 'rps'))}/s{_cpu(c.get(key))}"))
    out.extend(live.rows(res))
    out.extend(firstpaint.rows(res))
    out.extend(firstboard.rows(res))
    out.extend(widget_reload.rows(res))
    return out


def _hosting_row(res: dict, peer_cell: Any) -> dict:
    """Row 7: hosting a competition, ours and the original's, interleaved in one loop."""
    h = res.get("hosting") or {}
    e7 = _err(res, "hosting")
    mine, theirs = h.get("ours") or {}, h.get("peer") or {}

    def cell(d: dict) -> str:
        return (
            f"{_num(d.get('p50_ms'), '{:,.1f}')} ms ({_num(_g(d, 'request', 'p50_ms'), '{:,.1f}')}"
            f" ms the request alone; {_num(d.get('cpu_ms'), '{:,.1f}')} server CPU ms each)"
        )

    ratio = (
        theirs["p50_ms"] / mine["p50_ms"] if mine.get("p50_ms") and theirs.get("p50_ms") else None
    )
    peer_txt = f"{NOT_RUN} ({theirs['not_run']})" if theirs.get("not_run") else cell(theirs)
    return {
        "id": "7",
        "workload": f"Host a {h.get('rows', 1000):,}-row classify competition from DataFrames "
        "(dataset id + 3 features, answer id + label, public fraction 0.5), median of "
        f"{mine.get('runs', '-')}, alternating with the original",
        "ours": e7 or cell(mine),
        "peer": peer_cell(peer_txt) if not e7 else "-",
        "floor": "-",
        "ratio": _num(ratio, "{:,.1f}x original") + _cpu_ratio(mine, theirs, "{:,.1f}x"),
        "target": "≤ the original's time",
        "met": _met(None if ratio is None else ratio >= 1),
    }


def _postgres_rows(res: dict) -> list[dict]:
    """Workload 1 on one server process over PostgreSQL, against SQLite's in the same run."""
    if "w1_pg" not in res:
        return []  # an older run, or `--only` another workload
    pg, lite = res["w1_pg"], res.get("w1") or {}
    out = []
    for key, label, goal in (("seq", "sequential", None), ("par8", "8 concurrent clients", 60)):
        ours, base = _g(pg, key, "rps"), _g(lite, key, "rps")
        share = ours / base * 100 if ours and base else None
        out.append(
            {
                "id": "1",
                "workload": f"…same, {label}, on PostgreSQL (one server process, a private "
                "database on the local PostgreSQL)",
                "ours": _err(res, "w1_pg")
                or (f"{NOT_RUN} ({pg['not_run']})" if "not_run" in pg else "")
                or f"{_num(ours)}/s{_cpu(pg.get(key))}{_db_cpu(pg.get(key))}",
                "peer": "-",
                "floor": f"{_num(base)}/s on SQLite (row above, this run)",
                "ratio": _num(share, "{:,.0f}% of SQLite"),
                "target": f"≥ {goal}% of SQLite (issue 16)" if goal else "(information)",
                "met": _met(None if share is None or goal is None else share >= goal),
            }
        )
    return out


def table_only(res: dict, only: str | None = None) -> str:
    lines = [
        "| # | Workload | crowdsource (this) | original 0.1.0 | floor | ratio | target | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ids = {
        "hosting": "7",
        "w1": "1",
        "w1_pg": "1",
        "w1_multi": "1",
        "w2": "2",
        "w3": "3",
        "w4": "4",
        "live": "12",
        "first_paint": "12",
        "first_board": "13",
        "widget_reload": "13",
    }
    for r in rows(res):
        if only and r["id"] != ids.get(only, r["id"]):
            continue
        cells = [
            " ".join(r[k].replace("|", "/").split())[:400] if isinstance(r[k], str) else str(r[k])
            for k in ("id", "workload", "ours", "peer", "floor", "ratio", "target", "met")
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(res: dict) -> str:
    m = res["machine"]
    cfg = res["config"]
    rs = rows(res)
    met = [r for r in rs if r["met"] == "**yes**"]
    missed = [r for r in rs if r["met"] == "**no**"]
    peer = res.get("peer") or {}
    smoke = " (SMOKE RUN: tiny sizes, not the real figures)" if res.get("smoke") else ""
    parts = [
        f"# Benchmarks{smoke}",
        "",
        "Written by `make bench` (`bench/run.py`); do not edit by hand. Every figure below comes "
        "from one run on one machine: this project's server, the published original "
        "(crowdsource 0.1.0, through `../shared/peer`) and the machine's floor, measured one "
        "after the other. These machines are shared and noisy, so compare the ratios, not the "
        "absolute numbers, and rerun before drawing conclusions from a small difference.",
        "",
        f"- **Command:** `{res['command']}`",
        f"- **When:** {res['started']}; took {res.get('elapsed_s', 0):.0f} s"
        + (
            f" (plus {res['peer_setup_s']:.0f} s setting up the original's venv)"
            if res.get("peer_setup_s", 0) > 5
            else ""
        ),
        f"- **Code:** commit {res.get('commit', 'unknown')}",
        f"- **Machine:** {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, {m['os']}, "
        f"Python {m['python']}; load average at start {m['loadavg_at_start']}",
        f"- **Load generator:** {res['generator']} (the same for hello-world, our reads and "
        "the original's, so their ratios are fair)",
        "- **CPU ms each:** user + system CPU of the server process and its children during "
        "that load run, divided by the requests served. It does not depend on how busy the "
        "machine is, so the *by CPU* ratios are the steadier ones on a shared machine.",
        f"- **Targets:** {len(met)} met, {len(missed)} missed"
        + (": " + "; ".join(f"{r['id']} ({r['target']})" for r in missed) if missed else ""),
        "",
        table_only(res),
        "",
        "## How each figure is taken",
        "",
        f"1. A {cfg['rows_small']:,}-row binary classify competition (log loss). One "
        "pre-encoded submission (id plus one probability column per class, rows shuffled) is "
        f"POSTed for {cfg['dur']} s by `wrk`: 1 connection (sequential), then 8 connections "
        "(8 participants' tokens in turn). Every answer is a 201 with the score: scoring happens "
        "inside the request. The original gets the same rows as its `to_json()` body through "
        "its cookie session. The floor is the hello-world Tornado app answering a POST of the "
        "same body with a small JSON object (body read, nothing scored or stored), same wrk "
        "settings. The `--processes 2` row repeats the 8-client run on a fresh server started "
        "with two serving processes on one SQLite file.",
        f"2. A {cfg['rows_big']:,}-row competition; the submission (shuffled ids) is POSTed as "
        "raw Parquet; the time runs until the public leaderboard counts it. The first submission "
        "is shown as *cold*. Bodies over 256 KiB go to a file as they arrive; the scoring "
        "process reads, scores and stores them from there. The floor reads "
        "the same Parquet bytes in-process with pyarrow, aligns them to the answer by id "
        "(argsort + searchsorted, checks ids match) and computes log loss with numpy "
        "(median of 5).",
        f"3. A 10-row competition on its own server, filled by `wrk` through the API with "
        f"submissions from {cfg['board_participants']} participants up to the first level; the "
        "next levels are bulk-inserted into its SQLite file with the server's own models "
        "(copies of a real submission, board entries updated as the server does) while it is "
        "stopped, since the API alone cannot store 100,000 within the 5-minute run; the server "
        "is restarted and the board read once before measuring. Then `GET "
        f".../leaderboard` for {cfg['dur_read']} s with {cfg['read_conns']} connections "
        "(reads/s) and 1 connection (p50/p99). Hello-world: a Tornado app in its own process, "
        "same Tornado, same wrk settings.",
        "4. The bench's competitor runs `crowdsource.client.Client.compete()`; an observer "
        "on `/api/v1/events` (every competition) stamps the first `leaderboard.changed` of "
        "the new competition whose board counts an entry (only the competitor submits to it: "
        "the entry is the competitor's). Clock starts when the "
        "host's POST /competitions is sent; the first run is a warm-up.",
        "5. During one more submission of workload 2, one client reads that competition's "
        f"leaderboard every {cfg['read_interval_s'] * 1e3:.0f} ms on a keep-alive connection.",
        "6. `VmHWM` of the server and its scoring processes (reset through "
        "`/proc/PID/clear_refs` before workload 2, once the scoring process is idle after "
        "hosting, which loads the answer into it) minus their RSS before it, against "
        "`DataFrame.memory_usage(deep=True)` of the submission.",
        f"7. Our server and the original, each fresh on its own SQLite file, run at once; "
        f"hostings alternate (ours, then the original's), {cfg.get('hosting_runs', 30)} each "
        "after two warm-ups, so a busy moment on the machine falls on both. From the DataFrames "
        "to the created competition: ours through `Client.host` (a multipart form with the "
        "JSON spec and Parquet parts), the original as its client sends it (each frame's "
        "`to_json()` inside a JSON spec). *The request alone* repeats it with each body "
        "encoded once beforehand. Server CPU: the server process and its children.",
        f"12. Issue 12 (`bench/live.py`): a {cfg['rows_small']:,}-row competition whose public "
        f"board gets {cfg.get('live_participants', 10_000):,} participants seeded through the "
        "server's tables (`tests.support.seed_board`, server stopped meanwhile). 8 `wrk` clients "
        f"POST for {cfg.get('live_dur', 5)} s with no watcher, then with "
        f"{cfg.get('live_watchers', 1000):,} WebSockets on `/api/v1/events?competition=ID` "
        "opened by one separate asyncio process (`bench/watchers.py`): half read every byte "
        f"({cfg.get('live_probes', 20)} of them as WebSocket clients parsing every frame, the "
        "rest draining their raw socket, so that this one process keeps up), half never read "
        "after the handshake. Beside them one more participant submits with "
        f"`?wait=true` every {cfg.get('live_probe_interval_s', 0.1) * 1e3:.0f} ms; "
        "the parsing ones stamp when its entry first shows each "
        "new submissions count (in a `leaderboard.delta`, a snapshot or a whole-board "
        "`leaderboard.changed`), against the time of the 201, on the machine's monotonic "
        "clock; a count a watcher never saw is counted as infinitely late. Then the server "
        f"process's RSS before and 2 s after {cfg.get('live_submissions', 5000):,} more "
        f"submissions (capped at {cfg.get('live_mem_cap_s', 45)} s) with the watchers still "
        "connected; the peak is sampled every 0.2 s. First paint (`bench/firstpaint.py`): "
        "another seeded board of as many entries; `/leaderboard#ID` loaded "
        f"{cfg.get('paint_loads', 5)} times in headless Chromium (the browser tests' launch "
        "arguments), each in a fresh context (cold cache); the page's `performance.now()` in "
        "the first animation frame after the first board row is in the document (a "
        "`performance.mark`), i.e. from the navigation's start to the frame that paints rows.",
        "13. Issue 13 (`bench/firstboard.py`): another seeded board of as many entries; "
        f"{cfg.get('kernel_runs', 3)} fresh IPython kernels (jupyter_client, as JupyterLab "
        "starts them), each running `%load_ext crowdsource` and `%crowdsource connect URL`, "
        "then `%crowdsource leaderboard ID`: the time from sending the first cell until the "
        "kernel has sent the widget's view and a widget state holding the board's entries (what a "
        "browser needs to draw it), read from the kernel's iopub channel. After a browser reload "
        "(`bench/widget_reload.py`): our server holds a small competition with "
        "four submissions; a real JupyterLab with the extension (the browser tests' harness) "
        "opens a notebook whose cell runs `%crowdsource leaderboard ID` in headless Chromium, "
        "and the page is blocked from reaching the crowdsource server (HTTP through the "
        "DevTools protocol, which keeps the HTTP cache on; checked after the reloads), so "
        "the widget draws from the kernel's synced traitlets. The cell runs once, the fourth "
        "submission reaches the widget through the kernel, the notebook is saved; then the "
        "page is reloaded "
        f"{cfg.get('reload_loads', 5)} times in the same browser context (a warm HTTP cache, "
        "as a person's reload; the kernel keeps running, nothing is re-run). An init script "
        "stamps `performance.now()` (from the navigation's start) in the animation frame after "
        "the notebook's first cell, the widget's root, the latest submission's row "
        "(`table.cs-board tr[data-entry]`) and the chart (plotly's `svg.main-svg` in every "
        "shown part of `.cs-chart`) are in the document. The figure runs from the notebook's "
        "first cell to the later of rows and chart, median over the reloads: before the cell "
        "is JupyterLab's own start, and JupyterLab connects the kernel (whose state the widget "
        "draws) some 0.6 s after it, so the time from navigation start, given beside it, is "
        "mostly not the widget's.",
        "",
    ]
    if peer.get("not_run"):
        parts += [f"The original was not run: {peer['not_run']}.", ""]
    return "\n".join(parts)
