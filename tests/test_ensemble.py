"""The crowd's ensemble: the host sees the blend of the top k entries' final submissions,
scored like a submission; its scores equal scikit-learn's on the same blend, computed here
from the frames as sent (rows shuffled), aligned by id (real servers, SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error, roc_auc_score

from crowdsource.client import Client, Forbidden
from crowdsource.notebook import session
from crowdsource.server.ensemble import vote
from tests.api import Api, classify_data
from tests.support import ServerProcess
from tests.test_finals import split_of

PARTICIPANTS = 4
ROOT = Path(__file__).resolve().parents[1]


def shuffled(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same predictions in another row order."""
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


def noisy_labels(truth: np.ndarray, classes: list[str], rng: np.random.Generator) -> np.ndarray:
    """Labels right most of the time."""
    return np.where(rng.random(len(truth)) < 0.5, rng.choice(classes, len(truth)), truth)


def noisy_probabilities(
    truth: np.ndarray, classes: list[str], rng: np.random.Generator
) -> np.ndarray:
    """Probabilities leaning to the true class."""
    p = rng.dirichlet(np.ones(len(classes)), len(truth))
    p[np.arange(len(truth)), [classes.index(t) for t in truth]] += rng.random(len(truth))
    return p / p.sum(axis=1, keepdims=True)


def majority(frames: list[np.ndarray]) -> np.ndarray:
    """A plain row-by-row majority vote; ties go to the best-ranked member's label."""
    out = []
    for row in zip(*frames, strict=True):
        counts = pd.Series(row).value_counts()
        tied = set(counts[counts == counts.max()].index)
        out.append(next(label for label in row if label in tied))
    return np.array(out)


KINDS: dict[str, dict[str, Any]] = {
    "logloss": {"type": "classify", "classes": ["a", "b", "c"]},
    "roc_auc": {"type": "classify", "classes": ["no", "yes"]},
    "accuracy": {"type": "classify", "classes": ["a", "b", "c"]},
    "rmse": {"type": "regress"},
}


def world(server: ServerProcess, metric: str) -> dict[str, Any]:
    """A host and four participants, each submitting once, rows shuffled."""
    kind = KINDS[metric]
    rng = np.random.default_rng(3)
    host = Api(server)
    if kind["type"] == "classify":
        dataset, answer = classify_data(240, tuple(kind["classes"]), seed=4)
        targets = ["label"]
    else:
        ids = rng.permutation(np.arange(500, 740))
        dataset = pd.DataFrame({"id": ids, "x": rng.normal(size=240)})
        answer = pd.DataFrame({"id": ids, "y": rng.normal(10, 3, 240)})
        targets = ["y"]
    comp = host.host(
        type=kind["type"],
        metric=metric,
        targets=targets,
        dataset=dataset,
        answer=answer,
        public_fraction=0.5,
    )
    ids, truth = answer["id"].to_numpy(), answer[targets[0]].to_numpy()
    sent: dict[int, pd.DataFrame] = {}
    for i in range(PARTICIPANTS):
        if metric == "accuracy":
            df = pd.DataFrame({"id": ids, "label": noisy_labels(truth, kind["classes"], rng)})
        elif kind["type"] == "classify":
            p = noisy_probabilities(truth, kind["classes"], rng)
            df = pd.DataFrame(p, columns=kind["classes"]).assign(id=ids)
        else:
            df = pd.DataFrame({"id": ids, "y": truth + rng.normal(0, 1 + i, len(ids))})
        r = Api(server).submit(comp["id"], shuffled(df, seed=i))
        assert r.status_code == 201, r.text
        sent[r.json()["id"]] = df
    truth_by_id = pd.Series(truth, index=ids).sort_index()
    public = split_of(server, comp["id"], truth_by_id.index.to_numpy())
    return {"host": host, "comp": comp, "sent": sent, "truth": truth_by_id, "public": public}


def expected(w: dict[str, Any], metric: str, submission_ids: list[int], rows: np.ndarray) -> float:
    """scikit-learn's score of the blend of these submissions on these rows, aligned by id."""
    truth = w["truth"]
    aligned = [w["sent"][s].set_index("id").loc[truth.index] for s in submission_ids]
    y = truth.to_numpy()[rows]
    if metric == "accuracy":
        return float(accuracy_score(y, majority([a["label"].to_numpy()[rows] for a in aligned])))
    blended = sum(a.to_numpy(dtype=float) for a in aligned) / len(aligned)
    blended = blended[rows]
    scorers: dict[str, Callable[[], float]] = {
        "logloss": lambda: log_loss(y, blended, labels=KINDS["logloss"]["classes"]),
        "roc_auc": lambda: roc_auc_score(y == "yes", blended[:, 1]),
        "rmse": lambda: mean_squared_error(y, blended[:, 0]) ** 0.5,
    }
    return float(scorers[metric]())


def ensemble(api: Api, cid: int, **params: Any) -> dict[str, Any]:
    """The ensemble, as the host sees it."""
    r = api.get(f"/competitions/{cid}/ensemble", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize("metric", list(KINDS))
def test_ensemble_scores_equal_scikit_learn(server: ServerProcess, metric: str) -> None:
    """Every k's public score, and after close its private one, is scikit-learn's score of
    the blend (mean probabilities or values; majority vote of labels) aligned by id."""
    w = world(server, metric)
    cid = w["comp"]["id"]
    found = ensemble(w["host"], cid)
    members = [m["submission_id"] for m in found["members"]]
    assert sorted(members) == sorted(w["sent"]) and found["board"] == "public"
    board = [e["participant"]["id"] for e in w["host"].board(cid)["entries"]]
    assert [m["participant_id"] for m in found["members"]] == board
    assert [s["k"] for s in found["scores"]] == list(range(1, PARTICIPANTS + 1))
    for s in found["scores"]:
        want = expected(w, metric, members[: s["k"]], w["public"])
        assert s["public_score"] == pytest.approx(want, rel=1e-9)
        assert s["private_score"] is None
    assert all(m["private_score"] is None for m in found["members"])

    assert w["host"].post(f"/competitions/{cid}/close").status_code == 200
    after = ensemble(w["host"], cid)
    assert after["board"] == "private" and after["closed"]
    members = [m["submission_id"] for m in after["members"]]
    for s in after["scores"]:
        want = expected(w, metric, members[: s["k"]], ~w["public"])
        assert s["private_score"] == pytest.approx(want, rel=1e-9)


def test_one_k_and_bad_k(server: ServerProcess) -> None:
    """`?k=` gives one blend, the same as the curve's; a new entry makes a new curve; a k out
    of range is a 400 saying which k may be asked for."""
    w = world(server, "rmse")
    cid = w["comp"]["id"]
    curve = ensemble(w["host"], cid)["scores"]
    assert ensemble(w["host"], cid, k=2)["scores"] == [curve[1]]
    newcomer = pd.DataFrame({"id": w["truth"].index, "y": w["truth"].to_numpy()})
    assert Api(server).submit(cid, shuffled(newcomer, seed=9)).status_code == 201
    fresh = ensemble(w["host"], cid)  # a new board state: not the cached curve
    assert len(fresh["scores"]) == PARTICIPANTS + 1 and fresh["members"][0]["rank"] == 1
    assert fresh["scores"][0]["public_score"] == 0.0
    for bad in ("0", "x", "99"):
        r = w["host"].get(f"/competitions/{cid}/ensemble", params={"k": bad})
        assert r.status_code == 400 and "k" in r.json()["message"], r.text


def test_ensemble_is_for_the_host_only(server: ServerProcess) -> None:
    """A participant asking gets a 403 that says why."""
    w = world(server, "rmse")
    r = Api(server).get(f"/competitions/{w['comp']['id']}/ensemble")
    assert r.status_code == 403 and "host" in r.json()["message"]


def test_no_entries_is_an_empty_curve(server: ServerProcess) -> None:
    """Before any submission the curve is empty, not an error."""
    host = Api(server)
    dataset, answer = classify_data(50, seed=1)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    found = ensemble(host, comp["id"])
    assert found["members"] == [] and found["scores"] == []


@given(st.lists(st.lists(st.integers(0, 3), min_size=5, max_size=5), min_size=1, max_size=7))
def test_vote_is_a_majority_with_best_ranked_tie_break(labels: list[list[int]]) -> None:
    """The vectorised vote equals a plain row-by-row one."""
    got = vote([np.array(row) for row in labels])
    assert got.tolist() == majority([np.array(row) for row in labels]).tolist()


# ---------------------------------------------------------------- the faces


def test_client_cli_and_magic_show_the_same_curve(
    sqlite_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Client.ensemble`, `crowdsource ensemble ID` and `%crowdsource ensemble ID` all show
    the server's curve; the notebook's chart marks the best single member by name."""
    w = world(sqlite_server, "rmse")
    cid, host = w["comp"]["id"], w["host"]
    served = ensemble(host, cid)["scores"]

    client = Client(sqlite_server.url, token=host.token, progress=False)
    found = client.ensemble(cid)
    assert found.scores["public_score"].tolist() == [s["public_score"] for s in served]
    assert found.scores["member"].tolist() == [m["name"] for m in found.members]
    best = found.best_member
    assert best is not None and best["public_score"] == min(
        m["public_score"] for m in found.members
    )
    assert client.ensemble(cid, k=3).scores["k"].tolist() == [3]
    with pytest.raises(Forbidden, match="host"):
        Client(sqlite_server.url, token=Api(sqlite_server).token, progress=False).ensemble(cid)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env |= {"CROWDSOURCE_URL": sqlite_server.url, "CROWDSOURCE_TOKEN": host.token}
    env["CROWDSOURCE_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cli = [sys.executable, "-m", "crowdsource.cli", "ensemble", str(cid)]
    text = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert best["name"] in text.stdout and "best single member" in text.stdout
    as_json = subprocess.run(
        [*cli, "--k", "2", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 0, as_json.stderr
    assert [r["public_score"] for r in json.loads(as_json.stdout)] == [served[1]["public_score"]]

    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "kernel"))
    monkeypatch.delenv("CROWDSOURCE_URL", raising=False)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "crowdsource")
    try:
        ip.run_line_magic("crowdsource", f"connect {sqlite_server.url} --token {host.token}")
        fig = ip.run_line_magic("crowdsource", f"ensemble {cid}")
        blend, members = fig.data
        assert list(blend.y) == [s["public_score"] for s in served]
        assert list(members.text) == [m["name"] for m in found.members]
        assert any(best["name"] in a.text for a in fig.layout.annotations)
    finally:
        session.state().client = None


def test_a_team_is_one_member(server: ServerProcess) -> None:
    """A team's entry brings one submission, its best public final one, whoever sent it."""
    rng = np.random.default_rng(9)
    ids = np.arange(100)
    y = rng.normal(size=100)
    host, alice, bob, carol = (Api(server) for _ in range(4))
    comp = host.host(
        type="regress",
        metric="rmse",
        targets=["y"],
        dataset=pd.DataFrame({"id": ids, "x": y}),
        answer=pd.DataFrame({"id": ids, "y": y}),
    )
    cid = comp["id"]
    code = alice.post(f"/competitions/{cid}/teams", json={"name": "Duo"}).json()["code"]
    assert bob.post(f"/competitions/{cid}/teams/join", json={"code": code}).status_code == 201
    sent = {}
    for who, noise in ((alice, 2.0), (bob, 0.5), (carol, 1.0)):
        frame = pd.DataFrame({"id": ids, "y": y + rng.normal(0, noise, 100)})
        sent[who.name] = who.submit(cid, shuffled(frame, seed=1)).json()["id"]
    found = ensemble(host, cid)
    assert [m["name"] for m in found["members"]] == ["Duo", carol.name]
    assert [m["submission_id"] for m in found["members"]] == [sent[bob.name], sent[carol.name]]


def test_clusters_are_not_blended(sqlite_server: ServerProcess) -> None:
    """Cluster ids mean nothing across submissions: a 400 says so."""
    host, ids = Api(sqlite_server), np.arange(30)
    comp = host.host(
        type="cluster",
        targets=["cluster"],
        dataset=pd.DataFrame({"id": ids, "x": ids * 1.0}),
        answer=pd.DataFrame({"id": ids, "cluster": ids % 3}),
    )
    r = host.get(f"/competitions/{comp['id']}/ensemble")
    assert r.status_code == 400 and "cannot be blended" in r.json()["message"], r.text
