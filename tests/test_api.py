"""The v1 API against a real server, on SQLite and on PostgreSQL."""

from __future__ import annotations

import io
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import websocket
from sklearn import metrics as skm

from tests.api import Api, classify_data, events_url, probabilities, read_event, split
from tests.support import ServerProcess


def test_register_returns_a_token_once(server: ServerProcess) -> None:
    """Registration gives a token that identifies you; listings never show it."""
    alice = Api(server)
    assert alice.get("/participants/me").json()["name"] == alice.name
    listed = alice.get("/participants").json()["participants"]
    assert alice.name in [p["name"] for p in listed]
    assert all("token" not in p for p in listed)


def test_host_shows_dataset_but_never_the_answer(server: ServerProcess) -> None:
    """Participants download the dataset as JSON or Parquet; the answer stays hidden."""
    host, bob = Api(server), Api(server)
    dataset, answer = classify_data()
    comp = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer)
    assert comp["classes"] == ["a", "b", "c"] and comp["status"] == "open"
    got = pd.DataFrame(**bob.get(f"/competitions/{comp['id']}/dataset").json())
    pd.testing.assert_frame_equal(got, dataset)
    raw = bob.get(
        f"/competitions/{comp['id']}/dataset", headers={"Accept": "application/vnd.apache.parquet"}
    )
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(raw.content)), dataset)
    assert bob.get(f"/competitions/{comp['id']}/answer").status_code == 403
    detail = bob.get(f"/competitions/{comp['id']}").json()
    assert not {"answer", "split_salt", "answer_blob_id"} & set(detail)


CLASSIFY = {
    "logloss": "probabilities",
    "roc_auc": "probabilities",
    "accuracy": "labels",
    "f1": "labels",
}
REGRESS = {
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "r2": skm.r2_score,
    "mape": skm.mean_absolute_percentage_error,
    "absdiff": skm.mean_absolute_error,
}


@pytest.mark.parametrize("metric", list(CLASSIFY))
def test_classify_scores_equal_scikit_learn(server: ServerProcess, metric: str) -> None:
    """Shuffled submissions are aligned by id and scored as scikit-learn scores them."""
    classes = ("no", "yes") if metric in ("roc_auc", "f1") else ("a", "b", "c")
    dataset, answer = classify_data(300, classes, seed=len(metric))
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric=metric, targets=["label"], dataset=dataset, answer=answer
    )
    pred = probabilities(dataset["id"].to_numpy(), classes, seed=3)
    if CLASSIFY[metric] == "labels":
        pred = pd.DataFrame({"id": pred["id"], "label": pred[list(classes)].idxmax(axis=1)})
    got = bob.submit(comp["id"], pred).json()["public_score"]
    truth = answer.set_index("id")["label"]
    aligned = pred.set_index("id").loc[truth.index]
    expected = {
        "logloss": lambda: skm.log_loss(truth, aligned, labels=list(classes)),
        "roc_auc": lambda: skm.roc_auc_score(truth == "yes", aligned["yes"]),
        "accuracy": lambda: skm.accuracy_score(truth, aligned["label"]),
        "f1": lambda: skm.f1_score(truth, aligned["label"], pos_label="yes"),
    }[metric]()
    assert got == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("metric", list(REGRESS))
def test_regress_scores_equal_scikit_learn(server: ServerProcess, metric: str) -> None:
    """Regression metrics match scikit-learn on rows aligned by id."""
    rng = np.random.default_rng(7)
    ids = rng.permutation(500)
    y = rng.normal(10, 3, 500)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="regress",
        metric=metric,
        targets=["y"],
        dataset=pd.DataFrame({"id": ids, "x": rng.normal(size=500)}),
        answer=pd.DataFrame({"id": ids, "y": y}),
    )
    pred = pd.DataFrame({"id": ids, "y": y + rng.normal(size=500)}).sample(frac=1)
    got = bob.submit(comp["id"], pred).json()["public_score"]
    aligned = pred.set_index("id").loc[ids, "y"]
    assert got == pytest.approx(REGRESS[metric](y, aligned), rel=1e-9)


def test_cluster_score_is_adjusted_rand(server: ServerProcess) -> None:
    """Cluster competitions score the adjusted Rand index, label names aside."""
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, 300)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="cluster",
        targets=["group"],
        dataset=pd.DataFrame({"id": np.arange(300), "x": rng.normal(size=300)}),
        answer=pd.DataFrame({"id": np.arange(300), "group": truth}),
    )
    guess = np.where(rng.random(300) < 0.8, truth, rng.integers(0, 4, 300))
    pred = pd.DataFrame({"id": np.arange(300), "group": [f"c{g}" for g in guess]})
    got = bob.submit(comp["id"], pred).json()["public_score"]
    assert got == pytest.approx(skm.adjusted_rand_score(truth, guess), rel=1e-9)


@pytest.mark.parametrize(("metric", "noise"), [("rmse", [0.1, 2.0, 0.5]), ("r2", [0.1, 2.0, 0.5])])
def test_ranks_follow_the_metric_direction(
    server: ServerProcess, metric: str, noise: list[float]
) -> None:
    """The least noisy participant leads, whether lower or higher is better."""
    rng = np.random.default_rng(2)
    ids, y = np.arange(400), rng.normal(size=400)
    host = Api(server)
    comp = host.host(
        type="regress",
        metric=metric,
        targets=["y"],
        dataset=pd.DataFrame({"id": ids}),
        answer=pd.DataFrame({"id": ids, "y": y}),
    )
    players = [Api(server) for _ in noise]
    for player, sigma in zip(players, noise, strict=True):
        r = player.submit(comp["id"], pd.DataFrame({"id": ids, "y": y + rng.normal(0, sigma, 400)}))
        assert r.status_code == 201, r.text
    entries = host.board(comp["id"])["entries"]
    assert [e["participant"]["name"] for e in entries] == [players[i].name for i in (0, 2, 1)]
    assert [e["rank"] for e in entries] == [1, 2, 3]
    assert host.name not in [e["participant"]["name"] for e in entries]


def test_best_score_counts_and_rank_in_the_answer(server: ServerProcess) -> None:
    """A worse later submission keeps the best score; the answer tells your rank."""
    dataset, answer = classify_data(100)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    perfect = bob.submit(comp["id"], answer).json()
    worse = bob.submit(comp["id"], answer.assign(label="a")).json()
    assert perfect["public_score"] == 1.0 and worse["public_score"] < 1.0
    assert worse["rank"] == 1
    entry = host.board(comp["id"])["entries"][0]
    assert (entry["score"], entry["submissions"]) == (1.0, 2)


def test_private_board_hidden_until_close(server: ServerProcess) -> None:
    """With public_fraction < 1 the private board and scores appear only after closing."""
    dataset, answer = classify_data(400)
    host, bob = Api(server), Api(server)
    closes = datetime.now(timezone.utc) + timedelta(seconds=3)
    comp = host.host(
        type="classify",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        public_fraction=0.5,
        closes_at=closes.isoformat(),
    )
    sub = bob.submit(comp["id"], probabilities(dataset["id"].to_numpy(), ("a", "b", "c"), 1))
    assert sub.json()["private_score"] is None
    assert bob.get(f"/competitions/{comp['id']}/leaderboard?board=private").status_code == 403
    assert host.get(f"/competitions/{comp['id']}/leaderboard?board=private").status_code == 200
    time.sleep(max(0.0, (closes - datetime.now(timezone.utc)).total_seconds()) + 0.2)
    private = bob.board(comp["id"], "private")["entries"][0]["score"]
    public = bob.board(comp["id"])["entries"][0]["score"]
    assert private is not None and private != public
    assert bob.get(f"/submissions/{sub.json()['id']}").json()["private_score"] == private


def test_daily_limit_says_when_it_resets(server: ServerProcess) -> None:
    """The limit counts scored submissions only; the refusal names the reset time."""
    dataset, answer = classify_data(50)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        daily_limit=2,
    )
    assert bob.submit(comp["id"], answer.iloc[:10]).status_code == 422
    first = bob.submit(comp["id"], answer).json()
    assert first["remaining_today"] == 1
    assert bob.submit(comp["id"], answer).status_code == 201
    refused = bob.submit(comp["id"], answer)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert first["quota_resets_at"] in refused.json()["message"]
    assert refused.json()["resets_at"] == first["quota_resets_at"]
    assert bob.submit(comp["id"], answer).status_code == 429  # refused again, the same way


def test_a_refusal_first_does_not_break_later_submissions(server: ServerProcess) -> None:
    """The first submission being refused (the host's) leaves the competition usable."""
    dataset, answer = classify_data(30)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    assert host.submit(comp["id"], answer).status_code == 403
    assert bob.submit(comp["id"], answer).status_code == 201


def test_late_answer_rows_rescore(server: ServerProcess) -> None:
    """A predict round scores nothing until truth arrives, then re-scores as rows come."""
    ids = np.arange(100)
    truth = pd.DataFrame({"id": ids, "price": np.linspace(1, 2, 100)})
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="predict",
        metric="mae",
        targets=["price"],
        dataset=pd.DataFrame({"id": ids, "day": ids % 7}),
    )
    sub = bob.submit(comp["id"], pd.DataFrame({"id": ids, "price": 1.5})).json()
    assert (sub["state"], sub["public_score"]) == ("awaiting_answer", None)
    first = host.post(f"/competitions/{comp['id']}/answer", json={"rows": split(truth[:50])})
    assert first.json() == {"answer_rows": 50, "rescored": 1}
    host.post(f"/competitions/{comp['id']}/answer", json={"rows": split(truth[50:])})
    now = bob.get(f"/submissions/{sub['id']}").json()
    assert now["state"] == "scored"
    assert now["public_score"] == pytest.approx(skm.mean_absolute_error(truth.price, [1.5] * 100))
    assert [h["answer_rows"] for h in now["history"]] == [0, 50, 100]
    assert host.board(comp["id"])["entries"][0]["score"] == now["public_score"]


def test_events_arrive_within_100ms(server: ServerProcess) -> None:
    """Scores and board changes are pushed on the WebSocket right after the action."""
    dataset, answer = classify_data(100)
    host, bob = Api(server), Api(server)
    ws_all = websocket.create_connection(events_url(server))
    read_event(ws_all, "hello")
    comp = host.host(type="classify", targets=["label"], dataset=dataset, answer=answer)
    assert read_event(ws_all, "competition.created")["data"]["id"] == comp["id"]
    ws = websocket.create_connection(events_url(server, competition=comp["id"]))
    read_event(ws, "hello")
    assert read_event(ws, "leaderboard.snapshot")["data"]["entries"] == []
    sub = bob.submit(comp["id"], answer.assign(a=1.0, b=0.0, c=0.0).drop(columns="label"))
    acknowledged = time.perf_counter()
    scored = read_event(ws, "submission.scored", timeout=1)
    delta = read_event(ws, "leaderboard.delta", timeout=1)
    elapsed = time.perf_counter() - acknowledged
    ws.close()
    ws_all.close()
    assert scored["data"]["submission_id"] == sub.json()["id"]
    assert delta["data"]["entries"][0]["participant"]["name"] == bob.name
    assert elapsed < 0.1, elapsed


def test_wait_false_acknowledges_then_scores(server: ServerProcess) -> None:
    """`?wait=false` answers 202 pending; the score arrives as an event."""
    dataset, answer = classify_data(100)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    ws = websocket.create_connection(events_url(server, competition=comp["id"]))
    read_event(ws, "hello")
    r = bob.submit(comp["id"], answer, params={"wait": "false"})
    assert (r.status_code, r.json()["state"]) == (202, "pending")
    assert read_event(ws, "submission.scored")["data"]["public_score"] == 1.0
    ws.close()


def test_idempotency_key_never_duplicates(server: ServerProcess) -> None:
    """A retried submission with the same key returns the first one."""
    dataset, answer = classify_data(50)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    first = bob.submit(comp["id"], answer, headers={"Idempotency-Key": "k1"})
    again = bob.submit(comp["id"], answer, headers={"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert len(bob.get(f"/competitions/{comp['id']}/submissions").json()["submissions"]) == 1


def test_parquet_submission(server: ServerProcess) -> None:
    """A raw Parquet body scores the same as JSON."""
    dataset, answer = classify_data(80)
    host, bob = Api(server), Api(server)
    comp = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )
    body = io.BytesIO()
    answer.sample(frac=1).to_parquet(body)
    r = bob.post(
        f"/competitions/{comp['id']}/submissions",
        data=body.getvalue(),
        headers={"Content-Type": "application/vnd.apache.parquet"},
    )
    assert r.json()["public_score"] == 1.0
    own = bob.get(f"/submissions/{r.json()['id']}/predictions").json()
    assert len(own["data"]) == 80
