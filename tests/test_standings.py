"""Standings: functions (known by their code digest) and participants ranked across the rounds
of a competition type; an edited function is a new version linked to the old (real servers of
their own, SQLite and PostgreSQL: standings read every competition of a type)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

import crowdsource.client as CC
from crowdsource.client.competitor import fingerprint
from crowdsource.notebook import session
from crowdsource.server.standings import normalised, ranked, versions
from tests.support import ServerProcess, private_server

ROOT = Path(__file__).resolve().parents[1]
MARKUP = '<a href="https://x.test">claim</a><b>x</b>'


def first_guess() -> Callable[[CC.Competition], pd.DataFrame]:
    """Alice's function `guess` as first written: 1.0 everywhere."""

    def guess(competition: CC.Competition) -> pd.DataFrame:
        return competition.template().assign(y=1.0)

    return guess


def edited_guess() -> Callable[[CC.Competition], pd.DataFrame]:
    """Alice's `guess` edited mid-season: 2.0 everywhere (other code, another digest)."""

    def guess(competition: CC.Competition) -> pd.DataFrame:
        return competition.template().assign(y=2.0)

    return guess


def big(competition: CC.Competition) -> pd.DataFrame:
    """Bob's function: 1.5 everywhere."""
    return competition.template().assign(y=1.5)


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own."""
    with private_server(request.param, tmp_path) as server:
        yield server


def player(server: ServerProcess, name: str) -> CC.Client:
    """A client acting as a new participant."""
    client = CC.Client(server.url, progress=False)
    client.register(name, save=False)
    return client


def season(server: ServerProcess) -> dict[str, Any]:
    """Three regress rounds (the answer is 2.0 everywhere): the first two closed. Alice's
    `guess` predicts 1.0 in rounds 1-2, then, edited, 2.0 in round 3; Bob's `big` 1.5 in
    every round; Carol submits a frame by hand (0.0)."""
    host = player(server, f"host-{uuid.uuid4().hex[:6]}")
    alice, bob, carol = (player(server, n) for n in ("alice", MARKUP, "carol"))
    old, new = first_guess(), edited_guess()
    ids = np.arange(1, 31)
    rounds = []
    for i in range(3):
        comp = host.host(
            pd.DataFrame({"id": ids, "x": ids * 1.0}),
            pd.DataFrame({"id": ids, "y": 2.0}),
            type="regress",
            title=f"round {i + 1}",
        )
        edited = new if i == 2 else old
        alice.submit(comp.id, edited(comp), function=edited)
        bob.submit(comp.id, big(comp), function=big)
        carol.submit(comp.id, comp.template().assign(y=0.0))
        if i < 2:
            host.close_competition(comp.id)
        rounds.append(comp.id)
    return {"host": host, "rounds": rounds, "old": old, "new": new, "alice": alice}


# ---------------------------------------------------------------- the rules


@given(st.dictionaries(st.integers(0, 50), st.integers(-5, 5), min_size=1), st.booleans())
def test_ranks_share_ties_and_normalise_from_best_to_last(
    scores: dict[int, int], higher: bool
) -> None:
    """Ranks: one more than the scores that beat each; normalised 0 (best) .. 1 (last)."""
    place = ranked({k: float(v) for k, v in scores.items()}, higher_is_better=higher)
    for key, rank in place.items():
        better = [v for v in scores.values() if (v > scores[key] if higher else v < scores[key])]
        assert rank == len(better) + 1
        assert 0.0 <= normalised(rank, len(place)) <= 1.0
    assert min(place.values()) == 1 and normalised(1, len(place)) == 0.0
    if len(set(scores.values())) == len(scores) > 1:
        assert normalised(max(place.values()), len(place)) == 1.0


@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.sampled_from("fg"), st.sampled_from("abcd")),
        unique=True,
        min_size=1,
    ),
    st.randoms(use_true_random=False),
)
def test_versions_number_each_functions_digests_in_order_seen(
    seen: list[tuple[int, str, str]], rnd: Any
) -> None:
    """Per participant and function name: digests numbered 1..n by when first seen, each
    linked to the one before it, whatever order they are read in."""
    first = {
        key: pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=i) for i, key in enumerate(seen)
    }
    shuffled = list(first.items())
    rnd.shuffle(shuffled)
    found = versions(dict(shuffled))
    for participant, name in {(p, n) for p, n, _ in seen}:
        chain = [d for p, n, d in seen if (p, n) == (participant, name)]
        for i, digest in enumerate(chain):
            previous = chain[i - 1] if i else None
            assert found[(participant, name, digest)] == (i + 1, previous)


# ---------------------------------------------------------------- the API


def test_functions_and_participants_across_rounds(fresh: ServerProcess) -> None:
    """`GET /standings?type=regress`: the edited function is version 2 linked to version 1;
    Carol's frames rank her as a participant only."""
    w = season(fresh)
    data = w["alice"].standings_data(type="regress")
    assert [r["competition_id"] for r in data["rounds"]] == w["rounds"]
    assert [r["entries"] for r in data["rounds"]] == [3, 3, 3]
    functions = [
        (f["participant"]["name"], f["function"]["name"], f["function"]["version"])
        for f in data["functions"]
    ]
    assert functions == [("alice", "guess", 2), (MARKUP, "big", 1), ("alice", "guess", 1)]
    v2, bob, v1 = data["functions"]
    assert v2["function"]["digest"] == fingerprint(w["new"])
    assert v2["function"]["previous"] == v1["function"]["digest"] == fingerprint(w["old"])
    assert v1["function"]["previous"] is None
    assert (bob["rounds"], bob["wins"], bob["mean_normalised_rank"]) == (3, 2, pytest.approx(1 / 3))
    assert [(r["rank"], r["of"], r["normalised"]) for r in bob["ranks"]] == [
        (1, 2, 0.0),
        (1, 2, 0.0),
        (2, 2, 1.0),
    ]
    people = [(p["participant"]["name"], p["mean_normalised_rank"]) for p in data["participants"]]
    assert people == [
        (MARKUP, pytest.approx(1 / 6)),
        ("alice", pytest.approx(1 / 3)),
        ("carol", 1.0),
    ]
    assert (data["functions_total"], data["participants_total"]) == (3, 3)
    url = f"{fresh.url}/api/v1/standings"
    for limit, offset in itertools.product((1, 2, 3, 10), (0, 1, 2, 3, 7)):
        page = requests.get(url, params={"type": "regress", "limit": limit, "offset": offset})
        got = page.json()
        for rows in ("functions", "participants"):
            assert got[rows] == data[rows][offset : offset + limit], (limit, offset)
        assert (got["functions_total"], got["participants_total"]) == (3, 3)
        assert got["rounds"] == data["rounds"]
    for bad in ({"limit": 0}, {"limit": 10_001}, {"offset": -1}, {"limit": "ten"}):
        r = requests.get(url, params={"type": "regress", **bad})
        assert r.status_code == 400 and next(iter(bad)) in r.json()["message"], r.text


def test_a_bad_type_is_a_400_naming_the_types(fresh: ServerProcess) -> None:
    """The message lists the competition types."""
    client = CC.Client(fresh.url, progress=False)
    with pytest.raises(CC.BadRequest, match="'type' must be one of classify, regress"):
        client.standings(type="poetry")
    assert client.standings(type="cluster").empty


# ---------------------------------------------------------------- the faces


def test_client_cli_and_magic_show_the_same_standings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Client.standings`, `crowdsource standings TYPE` and `%crowdsource standings TYPE` (a
    table and a chart of rank by round, names as text)."""
    with private_server("sqlite", tmp_path) as server:
        w = season(server)
        frame = w["alice"].standings(type="regress")
        assert frame[["participant", "function", "version"]].values.tolist() == [
            ["alice", "guess", 2],
            [MARKUP, "big", 1],
            ["alice", "guess", 1],
        ]
        people = w["alice"].standings(type="regress", of="participants")
        assert people["participant"].tolist() == [MARKUP, "alice", "carol"]

        env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
        env |= {"CROWDSOURCE_URL": server.url, "CROWDSOURCE_CONFIG_DIR": str(tmp_path / "c")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        cli = [sys.executable, "-m", "crowdsource.cli", "standings", "regress"]
        text = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=True)
        assert "functions across 3 regress rounds" in text.stdout and MARKUP in text.stdout
        out = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert json.loads(out.stdout)["functions"][0]["function"]["version"] == 2

        monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "kernel"))
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "crowdsource")
        try:
            ip.run_line_magic("crowdsource", f"connect {server.url}")
            fig = ip.run_line_magic("crowdsource", "standings regress")
            names = [trace.name for trace in fig.data]
            assert names[0] == "alice: guess v2"
            assert names[1].startswith("&lt;a href=") and "<" not in names[1]
            assert list(fig.data[1].y) == [1, 1, 2]
            assert list(fig.layout.xaxis.categoryarray) == [
                f"{cid}: round {i + 1}" for i, cid in enumerate(w["rounds"])
            ]
        finally:
            session.state().client = None
