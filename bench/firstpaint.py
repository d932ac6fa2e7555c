"""Issue 12's first-paint row of `make bench`: the server's /leaderboard page opened on a
board of 10,000 entries (seeded with `tests.support.seed_board`) in headless Chromium,
launched as the browser tests launch it. Each load runs in a fresh browser context (a cold
HTTP cache); the page's own clock (`performance.now()`, from the navigation's start) is read
in the first animation frame after the board's first entry row is in the document: the frame
that paints it. A `performance.mark("cs-board-rows")` is left there too. Target: under 1 s.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ours
from bench.seeded import seeded_competition, timed_row, timings
from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS

TARGET_MS = 1000.0

# Installed before the page's own scripts: stamps the frame that first paints board rows.
STAMP_FIRST_ROWS = """
(() => {
  const rows = () => document.querySelector('table.cs-board tr[data-entry]');
  const stamp = () => requestAnimationFrame(() => {
    performance.mark('cs-board-rows');
    window.__csFirstRows = performance.now();
  });
  const watch = new MutationObserver(() => {
    if (rows()) { watch.disconnect(); stamp(); }
  });
  watch.observe(document, { childList: true, subtree: true });
})();
"""


def _load(browser: Any, url: str) -> dict:
    """One load in a fresh context: ms to the first painted board rows, and to the FCP."""
    context = browser.new_context(viewport={"width": 1280, "height": 820})
    try:
        page = context.new_page()
        page.add_init_script(STAMP_FIRST_ROWS)
        page.goto(url)
        page.locator("table.cs-board tr[data-entry]").first.wait_for(timeout=30_000)
        rows = None
        for _ in range(100):  # the stamp comes one frame later (the page's CSP forbids eval)
            rows = page.evaluate("window.__csFirstRows ?? null")
            if rows is not None:
                break
            page.wait_for_timeout(20)
        if rows is None:
            raise RuntimeError("board rows showed but no animation frame stamped them")
        fcp = page.evaluate(
            "(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime ?? null"
        )
        shown = page.locator("table.cs-board tbody.cs-top tr[data-entry]").count()
        return {"rows_ms": float(rows), "fcp_ms": fcp, "rows_shown": shown}
    finally:
        context.close()


def run(cfg: dict, log: Callable) -> dict:
    """`paint_loads` loads of /leaderboard#ID on a fresh server (SQLite); not run (and said
    so) without Chromium, as the cluster row without HAProxy."""
    if not Path(CHROMIUM).exists():
        log(f"  first paint: not run: {CHROMIUM} is missing (apt-get install -y chromium)")
        return {"not_run": f"{CHROMIUM} is missing (apt-get install -y chromium)"}
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-paint-") as td:
        srv = ours.Server(Path(td))
        srv.start()
        try:
            cid = seeded_competition(srv, cfg, Path(td), log, name="first paint", seed=7)
            url = f"{srv.url}/leaderboard#{cid}"
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    loads = [_load(browser, url) for _ in range(cfg["paint_loads"])]
                finally:
                    browser.close()
        finally:
            srv.stop()
    times = [x["rows_ms"] for x in loads]
    out = timings(times, participants=cfg["live_participants"], loads=loads)
    log(
        f"  first paint: board rows at {out['median_ms']:,.0f} ms median of {len(times)} "
        f"loads (first {out['first_ms']:,.0f} ms, slowest {out['max_ms']:,.0f} ms)"
    )
    return out


def rows(res: dict) -> list[dict]:
    """The table's row (none when the workload was not run)."""
    if "first_paint" not in res:
        return []
    fp = res["first_paint"]
    n = f"{fp.get('participants', 10_000):,}"
    what = (
        f"The /leaderboard page on a {n}-entry board in headless Chromium: navigation start "
        "to the frame that first paints board rows (a fresh context each load)"
    )
    if "error" in fp:
        return [_row(what, f"failed: {fp['error']}", None)]
    if "not_run" in fp:
        return [_row(what, f"not run: {fp['not_run']}", None)]
    fcps = [x["fcp_ms"] for x in fp["loads"] if x.get("fcp_ms") is not None]
    cell = (
        f"{fp['median_ms']:,.0f} ms median of {len(fp['loads'])} loads (first "
        f"{fp['first_ms']:,.0f} ms, slowest {fp['max_ms']:,.0f} ms"
        + (f"; first contentful paint {statistics.median(fcps):,.0f} ms" if fcps else "")
        + f"; {fp['loads'][0]['rows_shown']} rows shown)"
    )
    return [_row(what, cell, fp["median_ms"])]


def _row(what: str, cell: str, ms: float | None) -> dict:
    return timed_row(
        issue="12", what=what, cell=cell, ms=ms, target_ms=TARGET_MS, peer="not run (no live page)"
    )
