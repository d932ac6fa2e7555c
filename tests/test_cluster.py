"""The deployment of docs/deploy.md, run for real: PostgreSQL, two servers behind HAProxy
(examples/deploy/haproxy.cfg as shipped), a Dask scheduler and two workers. The Quick Example
and a live watcher run through the balancer; then one server, one Dask worker, the scheduler
and every database connection are killed in turn, under load. After each: nothing
acknowledged is lost, nothing is counted twice, the watcher has reconnected by itself and
gets later events, and what is left serves again without a restart.

The tests run in order on one cluster (each fault is survived before the next)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest

import crowdsource.client as CC
from tests.api import Api
from tests.cluster import HAPROXY_CFG, ROOT, Cluster, Submitter, cluster, frame, wait_for

pytestmark = pytest.mark.timeout(1200)  # several rounds of load on a shared 2-core machine

SMALL, BIG = 200, 3000  # rows: a small submission is scored on a server thread, a big on Dask
DAILY_LIMIT = 100_000


class Watcher:
    """A client following the event stream through the balancer (a `Competitor`, which
    reconnects by itself): it answers every classify competition it hears of."""

    def __init__(self, url: str) -> None:
        self.client = CC.Client(url)
        self.client.register(f"watcher-{os.getpid()}", save=False)
        self.answered: set[int] = set()
        self._lock = threading.Lock()
        self.competitor = self.client.compete("classify", self._answer, on_result=self._record)

    def _answer(self, competition: CC.Competition) -> pd.DataFrame:
        answer = competition.template()
        answer[competition.targets[0]] = "a"
        return answer

    def _record(self, result: CC.RunResult) -> None:
        if result.ok:
            with self._lock:
                self.answered.add(result.competition_id)

    def stream_port(self) -> int | None:
        """The local port of the watcher's WebSocket (to find the server behind it)."""
        stream = self.competitor.follower._stream
        ws = getattr(stream, "_ws", None)
        sock = getattr(ws, "sock", None)
        return None if sock is None else int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The whole cluster, shared by this module's tests in order."""
    with cluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def watcher(topology: Cluster) -> Iterator[Watcher]:
    """The live watcher, connected through the balancer for the whole module."""
    w = Watcher(topology.url)
    wait_for("the watcher's stream", lambda: w.competitor.connections >= 1, 60)
    yield w
    w.competitor.stop(timeout=10)


def host(c: Cluster, rows: int) -> tuple[int, pd.DataFrame]:
    """Host a classify competition through the balancer; its id and a right answer."""
    dataset, answer = frame(rows, seed=rows)
    comp = Api(c.balancer).host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        daily_limit=DAILY_LIMIT,
    )
    return int(comp["id"]), answer


def check_books(c: Cluster, load: list[Submitter]) -> None:
    """Every acknowledged submission is stored once and scored; boards and quotas count each
    exactly once."""
    acks = [a for s in load for a in s.acks]
    ids = [a.id for a in acks]
    assert len(set(a.key for a in acks)) == len(acks)
    rows = c.sql(
        "SELECT id, participant_id, competition_id, idempotency_key FROM submissions"
        " WHERE id = ANY(%s)",
        ids,
    )
    stored = {r[0]: r[1:] for r in rows}
    lost = [a for a in acks if stored.get(a.id) != (a.participant_id, a.competition_id, a.key)]
    assert not lost, f"acknowledged but not stored as acknowledged: {lost}"
    twice = c.sql(
        "SELECT idempotency_key FROM submissions WHERE idempotency_key = ANY(%s)"
        " GROUP BY 1 HAVING count(*) > 1",
        [a.key for a in acks],
    )
    assert not twice, f"stored twice: {twice}"

    def pending() -> bool:
        left = c.sql("SELECT id FROM submissions WHERE id = ANY(%s) AND state = 'pending'", ids)
        return not left

    wait_for("every acknowledged submission scored", pending, 300)
    failed = c.sql(
        "SELECT id, reason FROM submissions WHERE id = ANY(%s) AND state <> 'scored'", ids
    )
    assert not failed, f"acknowledged, then failed: {failed}"
    for s in load:
        counted = c.sql(
            "SELECT submissions FROM entries WHERE competition_id = %s AND participant_id = %s"
            " AND board = 'public'",
            s.competition_id,
            s.participant_id,
        )
        scored = c.sql(
            "SELECT count(*) FROM submissions WHERE competition_id = %s AND participant_id = %s"
            " AND state = 'scored'",
            s.competition_id,
            s.participant_id,
        )
        assert counted == scored, f"participant {s.participant_id}: board {counted} != {scored}"
        probe = s.submit_once()  # the quota the server reports, against what is stored
        used = c.sql(
            "SELECT count(*) FROM submissions WHERE competition_id = %s AND participant_id = %s"
            " AND state <> 'failed'",
            s.competition_id,
            s.participant_id,
        )[0][0]
        assert probe.remaining_today == DAILY_LIMIT - used


def survive(
    c: Cluster,
    watcher: Watcher,
    fault: Callable[[], None],
    repair: Callable[[], None] = lambda: None,
) -> None:
    """Submit under load, run `fault`, check that the load goes on; `repair` (what systemd
    would do); then check that the books are right and that the watcher hears of a
    competition posted after the fault."""
    small, small_answer = host(c, SMALL)
    big, big_answer = host(c, BIG)
    load = [
        Submitter(c.url, small, small_answer),
        Submitter(c.url, big, big_answer),
        Submitter(c.url, big, big_answer, wait=False),
    ]
    for s in load:
        s.start()
    try:
        for s in load:
            wait_for("submissions acknowledged before the fault", lambda s=s: len(s.acks) >= 2)
        fault()
        marks = [len(s.acks) for s in load]
        for s, mark in zip(load, marks, strict=True):
            wait_for("submissions after the fault", lambda s=s, m=mark: len(s.acks) >= m + 2, 300)
    finally:
        for s in load:
            s.stop()
    repair()
    check_books(c, load)
    later, _ = host(c, SMALL)
    wait_for(
        "the watcher answers a competition posted after the fault",
        lambda: later in watcher.answered,
        180,
    )


def test_shipped_haproxy_config_is_valid() -> None:
    """examples/deploy/haproxy.cfg as shipped passes `haproxy -c`."""
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_quick_example_through_the_balancer(topology: Cluster, tmp_path: Path) -> None:
    """client1's two functions are scored on both of client2's competitions, via HAProxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env.update(
        CROWDSOURCE_CONFIG_DIR=str(tmp_path / "config"),
        CROWDSOURCE_URL=topology.url,
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    with open(tmp_path / "client1.log", "w") as log:
        client1 = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / "client1.py")], env=env, stdout=log, stderr=log
        )
    try:
        client2 = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "client2.py"), "--timeout=180"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        client1.send_signal(signal.SIGTERM)
        client1.wait(30)
    assert client2.returncode == 0, client2.stderr
    final = client2.stdout.split("Leaderboards after round 2:")[1]
    for name in ("client1-foo1", "client1-foo2"):
        rows = [line for line in final.splitlines() if name in line]
        assert len(rows) == 2, client2.stdout
        assert all(re.search(r"\s\d\.\d+\s", row) for row in rows)


def test_watcher_waits_for_a_board_through_the_balancer(
    topology: Cluster, watcher: Watcher
) -> None:
    """A competition posted through one server reaches the watcher (on either) and its board."""
    cid, _ = host(topology, SMALL)
    board = watcher.client.wait_for_leaderboard(cid, entries=1, timeout=180)
    assert board["participant"].str.startswith("watcher-").all()


def test_a_server_killed(topology: Cluster, watcher: Watcher) -> None:
    """The server holding the watcher's stream is SIGKILLed: HAProxy takes it out, the load
    goes on through the other, the watcher reconnects; restarted (as systemd would), it
    serves again and scores what it had acknowledged with 202 but not scored yet."""
    port = wait_for("the watcher's stream", watcher.stream_port, 60)
    name = wait_for("the watcher's server", lambda: topology.balancer.server_of(port), 60)
    victim = topology.servers[name]
    connections = watcher.competitor.connections

    def kill() -> None:
        victim.kill()
        topology.balancer.wait_until(name, "DOWN")
        wait_for("the watcher reconnects", lambda: watcher.competitor.connections > connections)

    def restart() -> None:  # it finishes what it acknowledged (202) but had not scored
        victim.start(timeout=120)
        topology.balancer.wait_until(name, "UP")

    survive(topology, watcher, kill, restart)
    assert Api(victim).get("/competitions").status_code == 200
    survive(topology, watcher, lambda: None)  # both serve again


def test_a_dask_worker_killed(topology: Cluster, watcher: Watcher) -> None:
    """A Dask worker is SIGKILLed mid-load: its jobs run on the other; it rejoins when
    restarted (as its systemd unit would)."""
    worker = topology.dask.workers[0]

    def kill() -> None:
        worker.kill()
        topology.dask.wait_for_workers(1)

    survive(topology, watcher, kill)
    topology.dask.start_workers()


def test_the_scheduler_killed_and_restarted(topology: Cluster, watcher: Watcher) -> None:
    """The Dask scheduler is SIGKILLed and started again on its address: the servers and the
    workers find it again, and what was acknowledged is scored."""

    def kill_and_restart() -> None:
        assert topology.dask.scheduler is not None
        topology.dask.scheduler.kill()
        topology.dask.start_scheduler()
        topology.dask.start_workers()  # workers that gave up are restarted, as systemd would

    survive(topology, watcher, kill_and_restart)
    before = topology.dask.tasks_run()
    survive(topology, watcher, lambda: None)
    assert topology.dask.tasks_run() > before, "the servers no longer score on Dask"


def test_every_database_connection_terminated(topology: Cluster, watcher: Watcher) -> None:
    """pg_terminate_backend on every connection to the database (servers, their LISTEN
    connections, the workers): all reconnect by themselves, and events flow again."""

    def terminate() -> None:
        assert topology.terminate_database_connections() > 0

    survive(topology, watcher, terminate)


def test_every_part_still_serves(topology: Cluster) -> None:
    """After every fault, both servers and the balancer answer, and two workers are there."""
    for server in topology.servers.values():
        assert Api(server).get("/competitions").status_code == 200
    assert Api(topology.balancer).get("/competitions").status_code == 200
    assert topology.dask.worker_names() == {"worker-1", "worker-2"}


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze (Debian's systemd package) is not on this machine: units unchecked",
)
def test_shipped_systemd_units_verify(tmp_path: Path) -> None:
    """examples/deploy/systemd/*.service pass `systemd-analyze verify`, with a venv of
    wrappers (running this Python's `crowdsource` and `dask`) in /opt/crowdsource/venv's place."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for command, module in (("crowdsource", "crowdsource.cli"), ("dask", "dask")):
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m {module} "$@"\n')
        wrapper.chmod(0o755)
    units = []
    for unit in (ROOT / "examples" / "deploy" / "systemd").glob("*.service"):
        name = unit.name.replace("@.", "@8881.")  # a template is verified as an instance
        text = unit.read_text().replace("/opt/crowdsource/venv", str(tmp_path / "venv"))
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    assert len(units) == 3
    check = subprocess.run(
        ["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0 and not check.stderr.strip(), check.stderr
