"""Automatic competing against real servers: exactly once, failures isolated, restarts."""

from __future__ import annotations

import contextvars
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import crowdsource.client as CC
from tests.support import ServerProcess


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Keep credentials in a temporary folder; ignore the caller's environment."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)


def registered(server: ServerProcess, prefix: str = "c") -> CC.Client:
    """A client registered as a fresh participant."""
    client = CC.Client(server.url)
    client.register(f"{prefix}-{uuid.uuid4().hex[:12]}", save=False)
    return client


def post(host: CC.Client, kind: str = "classify", **options) -> CC.Competition:
    """Post a small accuracy-scored competition of `kind`."""
    ids = np.arange(1, 11)
    dataset = pd.DataFrame({"id": ids, "x": np.linspace(-1, 1, 10)})
    answer = pd.DataFrame({"id": ids, "label": (dataset["x"] > 0).astype(int)})
    metric = "accuracy" if kind == "classify" else None
    return host.host(dataset, answer, type=kind, metric=metric, **options)


def zeros(competition: CC.Competition) -> pd.DataFrame:
    """Predict 0 everywhere."""
    return competition.template().assign(label=0)


def ones(competition: CC.Competition) -> pd.DataFrame:
    """Predict 1 everywhere."""
    return competition.template().assign(label=1)


def mine(competitor: CC.Competitor, ids: list[int]) -> list[CC.RunResult]:
    """The competitor's results for the competitions in `ids`."""
    return [r for r in competitor.results if r.competition_id in ids]


def wait_all(competitor: CC.Competitor, ids: list[int], each: int, timeout: float = 60) -> bool:
    """Wait until every competition in `ids` has `each` results."""
    deadline = time.monotonic() + timeout
    return all(
        competitor.wait(each, max(0.0, deadline - time.monotonic()), competition_id=i) for i in ids
    )


def submission_counts(client: CC.Client, ids: list[int]) -> Counter[int]:
    """How many scored submissions the client has per competition in `ids`."""
    return Counter(s.competition_id for s in client.submissions() if s.competition_id in ids)


def test_two_functions_n_competitions_gives_2n(sqlite_server) -> None:
    """One open before start plus N posted while competing: exactly 2 per competition."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    posted = [post(host).id]
    with CC.Competitor(player).add("classify", zeros).add("classify", ones) as competitor:
        assert competitor.wait_connected(10)
        posted += [post(host).id for _ in range(3)]
        post(host, kind="regress")
        assert wait_all(competitor, posted, 2)
        time.sleep(0.5)
        results = mine(competitor, posted)
    assert len(results) == 8 and all(r.ok for r in results)
    assert {(r.competition_id, r.function) for r in results} == {
        (c, f) for c in posted for f in ("zeros", "ones")
    }
    assert submission_counts(player, posted) == dict.fromkeys(posted, 2)


def test_raising_function_does_not_stop_the_other(sqlite_server) -> None:
    """A function that raises is recorded with its error; the other still submits."""

    def broken(competition: CC.Competition) -> pd.DataFrame:
        raise RuntimeError("no model yet")

    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    with CC.Competitor(player).add("classify", broken).add("classify", ones) as competitor:
        competition = post(host)
        assert competitor.wait(2, timeout=30, competition_id=competition.id)
    outcome = {r.function: r for r in competitor.results if r.competition_id == competition.id}
    assert outcome["ones"].ok and outcome["ones"].score == 0.5
    assert not outcome["broken"].ok and "no model yet" in outcome["broken"].error


def test_wrong_frame_is_logged_with_the_server_reason(sqlite_server, caplog) -> None:
    """A frame the server rejects is recorded with the server's message."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    with CC.Competitor(player).add("classify", lambda c: ones(c).iloc[:3], name="short") as comp:
        competition = post(host)
        assert comp.wait(1, timeout=30, competition_id=competition.id)
    [result] = mine(comp, [competition.id])
    assert not result.ok
    assert "InvalidSubmission" in result.error and "missing" in result.error
    assert "missing" in caplog.text


def test_hanging_function_does_not_block_others(sqlite_server) -> None:
    """While one function hangs, the other answers every competition."""
    release = threading.Event()

    def hangs(competition: CC.Competition) -> pd.DataFrame:
        release.wait(30)
        return ones(competition)

    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    competitor = CC.Competitor(player).add("classify", hangs).add("classify", zeros).start()
    try:
        posted = [post(host).id, post(host).id]
        assert wait_all(competitor, posted, 1, timeout=30)
        assert {r.function for r in mine(competitor, posted)} == {"zeros"}
        release.set()
        assert wait_all(competitor, posted, 2, timeout=60)
    finally:
        release.set()
        competitor.stop()


def test_server_restart_loses_and_duplicates_nothing(new_server) -> None:
    """Kill the server mid-run, restart it, post again: each competition answered once."""
    server = new_server()
    host, player = registered(server, "host"), registered(server)
    competitor = CC.Competitor(player, max_backoff=0.5).add("classify", zeros)
    competitor.add("classify", ones).start()
    try:
        first = post(host).id
        assert competitor.wait(2, timeout=30)
        server.restart()
        second = post(host).id
        third = post(host).id
        assert competitor.wait(6, timeout=60)
        assert competitor.connections >= 2
        time.sleep(0.5)
        assert len(competitor.results) == 6 and all(r.ok for r in competitor.results)
    finally:
        competitor.stop()
    assert submission_counts(player, [first, second, third]) == {first: 2, second: 2, third: 2}


def test_idempotency_key_prevents_duplicates_across_competitors(sqlite_server) -> None:
    """A second competitor for the same participant gets the first submission back."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    competition = post(host)
    ids = []
    for _ in range(2):
        with CC.Competitor(player).add("classify", ones) as competitor:
            assert competitor.wait(1, timeout=30, competition_id=competition.id)
            ids.append(mine(competitor, [competition.id])[0].submission_id)
    assert ids[0] == ids[1]
    assert submission_counts(player, [competition.id]) == {competition.id: 1}


def test_compete_on_client_shares_one_competitor(sqlite_server) -> None:
    """client.compete twice gives one running Competitor with both functions."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    seen: list[CC.RunResult] = []
    first = player.compete("classify", zeros, on_result=seen.append)
    second = player.compete("classify", ones)
    assert first is second and first.running
    competition = post(host)
    assert first.wait(2, timeout=30, competition_id=competition.id)
    player.close()
    assert first.stopped and {r.competition_id for r in seen} >= {competition.id}


def test_competitor_added_while_running_catches_up(sqlite_server) -> None:
    """A function added to a running competitor answers competitions already open."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    competition = post(host)
    with CC.Competitor(player).add("regress", zeros) as competitor:
        assert competitor.wait_connected(10)
        competitor.add("classify", ones)
        assert competitor.wait(1, timeout=30, competition_id=competition.id)


def test_upcoming_competition_runs_when_it_opens(sqlite_server) -> None:
    """A competition posted as upcoming is answered once it opens."""
    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    with CC.Competitor(player).add("classify", ones) as competitor:
        assert competitor.wait_connected(10)
        soon = datetime.now(timezone.utc) + timedelta(seconds=1.5)
        competition = post(host, opens_at=soon)
        assert competition.status == "upcoming"
        assert not competitor.wait(1, timeout=0.5, competition_id=competition.id)
        assert competitor.wait(1, timeout=30, competition_id=competition.id)


def test_functions_run_in_the_starting_context(sqlite_server) -> None:
    """Worker threads run in a copy of the starter's context (as a notebook needs)."""
    cell: contextvars.ContextVar[str] = contextvars.ContextVar("cell", default="none")
    cell.set("cell-7")
    seen: list[str] = []

    def record(competition: CC.Competition) -> pd.DataFrame:
        seen.append(cell.get())
        return ones(competition)

    host, player = registered(sqlite_server, "host"), registered(sqlite_server)
    with CC.Competitor(player).add("classify", record) as competitor:
        competition = post(host)
        assert competitor.wait(1, timeout=30, competition_id=competition.id)
    assert set(seen) == {"cell-7"}


def test_stop_is_idempotent_and_restart_refused(sqlite_server) -> None:
    """stop() twice is fine; a stopped competitor cannot start again."""
    competitor = CC.Competitor(registered(sqlite_server)).add("classify", ones).start()
    competitor.stop()
    competitor.stop()
    with pytest.raises(RuntimeError):
        competitor.start()


def test_competing_needs_a_token(sqlite_server) -> None:
    """Without a token, compete says to register first."""
    with pytest.raises(CC.Unauthorized, match="register"):
        CC.Client(sqlite_server.url).compete("classify", ones)


def test_an_edited_function_gets_a_new_key() -> None:
    """Re-registering changed code submits afresh; the same code keeps its key (no duplicate)."""
    from crowdsource.client.competitor import fingerprint, idempotency_key

    def guess(c: object) -> int:
        return 1

    same = guess

    def guess_again(c: object) -> int:
        return 2

    assert idempotency_key(7, "guess", fingerprint(guess)) == idempotency_key(
        7, "guess", fingerprint(same)
    )
    assert fingerprint(guess) != fingerprint(guess_again)
