"""Issue 13's reload row of `make bench`: the notebook widget after a browser reload.

Our server (SQLite) holds a small competition with a few submissions; a real JupyterLab with the
extension (`tests.browser.harness.Lab`) opens a notebook whose cell runs `%crowdsource
leaderboard ID` in headless Chromium, launched as the browser tests launch it. The page cannot
reach the crowdsource server (`only_the_kernel`, which keeps the browser's HTTP cache on), so
what the widget shows comes from the kernel's synced traitlets. The cell runs once; one more
submission arrives and reaches the widget through the kernel; the notebook is saved. Then the
page is reloaded `reload_loads` times in the same browser context (a warm HTTP cache, as a
person's reload); then a fetch from the page to that server must fail. On each, an init script
stamps `performance.now()` (from the navigation's start) in the animation frame after each of:
the notebook's first cell, the widget's root (`.cs-widget`), the board row of the latest
submission's participant (`table.cs-board tr[data-entry]`), and the chart (plotly's
`svg.main-svg` in every shown `.cs-chart` part). The figure is navigation start to both the rows
and the chart shown, median over the reloads. Target: under 1 s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ours
from bench.common import ROOT
from bench.seeded import timed_row
from tests.browser.api import Api
from tests.browser.harness import CHROMIUM, CHROMIUM_ARGS, Lab, Page
from tests.browser.test_widget import only_the_kernel, open_notebook, widget_notebook

TARGET_MS = 1000.0
STAMPS = ("cell", "widget", "rows", "chart")

# Installed before JupyterLab's own scripts: stamps the frame after each milestone first holds
# (a `performance.mark("cs-reload-NAME")` is left there too). `entry`: the latest participant.
STAMP_WIDGET = """
(entry => {
  const shown = {
    cell: () => document.querySelector('.jp-Notebook .jp-Cell'),
    widget: () => document.querySelector('.cs-widget'),
    rows: () =>
      document.querySelector(`.cs-widget table.cs-board tr[data-entry="${entry}"]`),
    chart: () => {
      const parts = [...document.querySelectorAll('.cs-widget .cs-chart > div:not([hidden])')];
      return parts.length > 0 && parts.every(p => p.querySelector('svg.main-svg'));
    }
  };
  const seen = new Set();
  window.__csReload = {};
  const stamp = name => requestAnimationFrame(() => {
    performance.mark(`cs-reload-${name}`);
    window.__csReload[name] = performance.now();
  });
  const watch = new MutationObserver(() => {
    for (const [name, found] of Object.entries(shown)) {
      if (!seen.has(name) && found()) { seen.add(name); stamp(name); }
    }
    if (seen.size === Object.keys(shown).length) { watch.disconnect(); }
  });
  watch.observe(document, { childList: true, subtree: true, attributes: true,
                            attributeFilter: ['hidden'] });
})
"""


# Whether the page can fetch from the crowdsource server (it must not: checked after the reloads).
REACH = "url => fetch(url + '/api/v1/competitions').then(() => true, () => false)"


def _competition(api: Api, log: Callable) -> tuple[dict, list[dict]]:
    """A small competition (rmse) with three participants' submissions."""
    comp = api.create_competition(api.register("reload-host"), "widget reload")
    people = [api.register(name) for name in ("ada", "ben", "cy")]
    for who, error in zip(people, (0.5, 0.3, 0.8), strict=True):
        api.submit(who, comp, error)
    log(f"  widget reload: competition {comp['id']} with {len(people)} submissions")
    return comp, people


def _lab(workdir: Path) -> Lab:
    """JupyterLab with this checkout's extension; its kernels import this checkout too."""
    workdir.mkdir()
    lab = Lab(workdir)
    paths = [str(ROOT), lab.env.get("PYTHONPATH", "")]
    lab.env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return lab.start()


def _wait_row(page: Any, entry: int, timeout_ms: float = 60_000) -> None:
    """Until the widget shows the entry row of participant `entry`."""
    row = page.locator(f'.cs-widget table.cs-board tr[data-entry="{entry}"]')
    row.wait_for(timeout=timeout_ms)


def _first_run(page: Any, lab: Lab, api: Api, comp: dict, srv_url: str) -> int:
    """Open the notebook, run its cell, send one more submission, save; the latest entry id."""
    source = f"%load_ext crowdsource\n%crowdsource connect {srv_url}\n"
    source += f"%crowdsource leaderboard {comp['id']}"
    name = widget_notebook(lab, srv_url, comp["id"], source=source)
    only_the_kernel(page, srv_url)
    open_notebook(lab, page, name, f"w{uuid.uuid4().hex[:12]}")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.locator(".cs-widget table.cs-board tr[data-entry]").first.wait_for(timeout=60_000)
    latest = api.register("latest")
    api.submit(latest, comp, 0.1)
    _wait_row(page, int(latest["id"]))  # through the kernel: the page cannot reach the server
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')", timeout=10_000)
    return int(latest["id"])


def _reload(page: Any) -> dict:
    """One reload: ms from the navigation's start to each stamp, and JupyterLab's load event."""
    page.reload()
    page.wait_for_function(
        "() => window.__csReload && 'rows' in window.__csReload && 'chart' in window.__csReload",
        polling=100,
        timeout=60_000,
    )
    stamps = page.evaluate("window.__csReload")
    load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    out = {name: stamps.get(name) for name in STAMPS}
    out["load"] = load
    out["shown"] = max(out["rows"], out["chart"])
    return out


def _measure(lab: Lab, api: Api, comp: dict, srv_url: str, loads: int) -> dict:
    """The first run, then `loads` reloads in one browser context; the page's errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 820})
            recorded = Page(context)
            page = recorded.page
            latest = _first_run(page, lab, api, comp, srv_url)
            page.add_init_script(f"{STAMP_WIDGET}({json.dumps(latest)})")
            reloads = [_reload(page) for _ in range(loads)]
            if page.evaluate(REACH, srv_url):
                raise RuntimeError("the page reached the crowdsource server, not the kernel alone")
            return {"reloads": reloads, "errors": recorded.errors}
        finally:
            browser.close()


def run(cfg: dict, log: Callable) -> dict:
    """`reload_loads` reloads of a notebook showing the widget; not run (and said so) without
    Chromium, as the first-paint row."""
    if not Path(CHROMIUM).exists():
        log(f"  widget reload: not run: {CHROMIUM} is missing (apt-get install -y chromium)")
        return {"not_run": f"{CHROMIUM} is missing (apt-get install -y chromium)"}
    with tempfile.TemporaryDirectory(prefix="bench-reload-") as td:
        srv = ours.Server(Path(td))
        srv.start()
        lab = None
        try:
            api = Api(srv.url)
            comp, _ = _competition(api, log)
            lab = _lab(Path(td) / "lab")
            got = _measure(lab, api, comp, srv.url, cfg["reload_loads"])
        finally:
            if lab is not None:
                lab.stop()
            srv.stop()
    out = _summary(got["reloads"])
    out["errors"] = got["errors"]
    log(
        f"  widget reload: board and chart at {out['median_ms']:,.0f} ms median of "
        f"{len(out['reloads'])} reloads (min {out['min_ms']:,.0f}, max {out['max_ms']:,.0f}; "
        f"rows {out['rows_ms']:,.0f}, chart {out['chart_ms']:,.0f}, notebook cell "
        f"{out['cell_ms']:,.0f}, widget root {out['widget_ms']:,.0f} ms)"
    )
    return out


def _summary(reloads: list[dict]) -> dict:
    """The median, min and max to both shown, and the median of each stamp."""
    shown = [r["shown"] for r in reloads]
    out: dict[str, Any] = {
        "reloads": reloads,
        "median_ms": statistics.median(shown),
        "min_ms": min(shown),
        "max_ms": max(shown),
    }
    for name in (*STAMPS, "load"):
        out[f"{name}_ms"] = statistics.median(r[name] for r in reloads)
    after = [r["shown"] - r["cell"] for r in reloads]
    out |= {"after_ms": statistics.median(after), "after_min_ms": min(after)}
    out["after_max_ms"] = max(after)
    return out


def rows(res: dict) -> list[dict]:
    """The table's row (none when the workload was not run)."""
    if "widget_reload" not in res:
        return []
    wr = res["widget_reload"]
    what = (
        "The notebook widget (`%crowdsource leaderboard`) after a browser reload of JupyterLab, "
        "drawn from the kernel (the page cannot reach the server): from the notebook's first "
        "cell on screen to the frame showing the latest entry's row and the chart (before it, "
        "JupyterLab's own start, which connects the kernel later still; from navigation start "
        "beside it)"
    )
    if "error" in wr:
        return [_row(what, f"failed: {wr['error']}", None)]
    if "not_run" in wr:
        return [_row(what, f"not run: {wr['not_run']}", None)]
    cell = (
        f"{wr['after_ms']:,.0f} ms median of {len(wr['reloads'])} reloads (min "
        f"{wr['after_min_ms']:,.0f}, max {wr['after_max_ms']:,.0f}). From navigation start: "
        f"the notebook's cell at {wr['cell_ms']:,.0f} ms, the widget's root at "
        f"{wr['widget_ms']:,.0f} ms, rows {wr['rows_ms']:,.0f} ms, chart {wr['chart_ms']:,.0f} "
        f"ms; both {wr['median_ms']:,.0f} ms (min {wr['min_ms']:,.0f}, max {wr['max_ms']:,.0f})"
    )
    return [_row(what, cell, wr["after_ms"])]


def _row(what: str, cell: str, ms: float | None) -> dict:
    """One table row of issue 13's target."""
    peer = "not run (not measured)"
    return timed_row(issue="13", what=what, cell=cell, ms=ms, target_ms=TARGET_MS, peer=peer)
