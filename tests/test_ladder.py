"""The Ladder (Blum and Hardt, 2015): its pure mechanism, and its point against a real server:
the boosting attack (random submissions, kept when the public board says they beat chance,
combined by majority vote) overfits a plain public board and far less a Ladder one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from crowdsource.client import Client
from crowdsource.server.ladder import climb, rounded
from crowdsource.server.storage.engine import migrate
from tests.api import Api
from tests.support import ServerProcess, database_at

ROOT = Path(__file__).resolve().parents[1]
STEPS = st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.25])
SCORES = st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=40)


def run_ladder(scores: list[float], *, step: float, higher: bool) -> list[float]:
    """The public score after each submission."""
    shown: float | None = None
    out = []
    for score in scores:
        new = climb(shown, score, step=step, higher_is_better=higher)
        shown = shown if new is None else new
        assert shown is not None
        out.append(shown)
    return out


def is_multiple(value: float, step: float) -> bool:
    """Whether `value` is a whole number of steps (up to float noise)."""
    return abs(value / step - round(value / step)) < 1e-6


@given(SCORES, STEPS, st.booleans())
def test_the_shown_score_only_improves_by_whole_steps(
    scores: list[float], step: float, higher: bool
) -> None:
    """Monotone in the metric's direction; every change at least one step; always rounded."""
    shown = run_ladder(scores, step=step, higher=higher)
    sign = 1.0 if higher else -1.0
    for before, after in pairwise(shown):
        gain = sign * (after - before)
        assert gain == 0 or gain >= step - 1e-9
    assert all(is_multiple(s, step) for s in shown)


@given(SCORES, STEPS, st.booleans())
def test_the_shown_score_tracks_the_best_within_a_step_and_a_half(
    scores: list[float], step: float, higher: bool
) -> None:
    """Never further than one step (plus rounding) from the best score so far."""
    shown = run_ladder(scores, step=step, higher=higher)
    for i, s in enumerate(shown):
        best = max(scores[: i + 1]) if higher else min(scores[: i + 1])
        assert abs(s - best) <= 1.5 * step + 1e-9


@given(st.floats(-10, 10, allow_nan=False), STEPS, st.booleans())
def test_the_first_score_is_shown_rounded(score: float, step: float, higher: bool) -> None:
    """The first score always counts, to the nearest step."""
    first = climb(None, score, step=step, higher_is_better=higher)
    assert first == rounded(score, step=step)
    assert first is not None and abs(first - score) <= step / 2 + 1e-9


def test_lower_is_better_metrics_climb_down() -> None:
    """For a loss, a lower score is the better one."""
    assert climb(0.70, 0.68, step=0.01, higher_is_better=False) == pytest.approx(0.68)
    assert climb(0.70, 0.695, step=0.01, higher_is_better=False) is None
    assert climb(0.70, 0.75, step=0.01, higher_is_better=False) is None
    assert climb(0.70, 0.75, step=0.01, higher_is_better=True) == pytest.approx(0.75)


# ---------------------------------------------------------------- against a real server

# sizes where the property holds by a clear margin: in a simulation of this attack over 1,000
# random splits, the plain gap was 0.17 on average and never under 0.08, and the plain gap
# minus the Ladder's never under 0.05 (the Ladder's: 0.03 on average)
ROWS = 2000  # half public: about 1,000 public rows, whose accuracy has a spread of 0.016
ATTACKS = 600  # random submissions per board
STEP = 0.02  # about the spread of the public accuracy


def binary_world(host: Api, *, scoring: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """A binary classify competition, half public; returns it, its ids and truth."""
    rng = np.random.default_rng(2015)
    ids = np.arange(ROWS)
    truth = rng.choice(["no", "yes"], ROWS)
    comp = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=pd.DataFrame({"id": ids, "x": rng.normal(size=ROWS)}),
        answer=pd.DataFrame({"id": ids, "label": truth}),
        public_fraction=0.5,
        public_scoring=scoring,
        ladder_step=STEP,
        final_submissions=1,
    )
    return comp, ids, truth


def boosting_attack(server: ServerProcess, *, scoring: str) -> float:
    """Blum and Hardt's boosting attack; returns its final submission's public-minus-private
    accuracy, read from the host's list after close (the host sees both exact scores)."""
    host, attacker = Api(server), Api(server)
    comp, ids, _ = binary_world(host, scoring=scoring)
    rng = np.random.default_rng(7)
    kept, last = [], None
    for _ in range(ATTACKS):
        guess = rng.integers(0, 2, ROWS)
        r = attacker.submit(
            comp["id"], pd.DataFrame({"id": ids, "label": np.where(guess, "yes", "no")})
        )
        assert r.status_code == 201, r.text
        public = r.json()["public_score"]
        # the best use of what the board says: a plain board's score is the submission's; a
        # Ladder's is the participant's, so only a move up singles this submission out
        if public > 0.5 and (scoring == "plain" or public != last):
            kept.append(guess)
        last = public
    vote = np.mean(kept, axis=0) > 0.5
    r = attacker.submit(comp["id"], pd.DataFrame({"id": ids, "label": np.where(vote, "yes", "no")}))
    assert r.status_code == 201, r.text
    final = r.json()["id"]
    assert host.post(f"/competitions/{comp['id']}/close").status_code == 200
    listing = host.get(f"/competitions/{comp['id']}/submissions").json()["submissions"]
    [mine] = [s for s in listing if s["id"] == final]
    return float(mine["public_score"] - mine["private_score"])


def test_the_ladder_blunts_the_boosting_attack(
    new_server: Callable[..., ServerProcess],
) -> None:
    """On a plain board the attack's combined guess looks far better on the public rows than
    on the private ones; on a Ladder board that gap is much smaller."""
    server = new_server(None, "--write-rate=0")
    plain = boosting_attack(server, scoring="plain")
    laddered = boosting_attack(server, scoring="ladder")
    assert plain > 0.08, (plain, laddered)  # the attack works on a plain board
    assert plain - laddered > 0.05, (plain, laddered)


def test_a_ladder_board_moves_by_steps_and_hides_the_exact_score(server: ServerProcess) -> None:
    """Each response shows the participant's laddered public score, never the exact one; the
    board moves only on a gain of more than the step; the host sees the exact scores."""
    host, me = Api(server), Api(server)
    rows = 200
    ids = np.arange(rows)
    truth = np.array(["no", "yes"] * (rows // 2))
    comp = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=pd.DataFrame({"id": ids, "x": np.zeros(rows)}),
        answer=pd.DataFrame({"id": ids, "label": truth}),
        public_scoring="ladder",
        ladder_step=0.1,
    )
    assert comp["public_scoring"] == "ladder" and comp["ladder_step"] == 0.1

    def submit(right: int) -> float:
        """A submission with `right` of the rows right; returns the public score shown."""
        guess = np.where(np.arange(rows) < right, truth, np.where(truth == "yes", "no", "yes"))
        r = me.submit(comp["id"], pd.DataFrame({"id": ids, "label": guess}))
        assert r.status_code == 201, r.text
        return float(r.json()["public_score"])

    assert submit(113) == pytest.approx(0.6)  # 0.565, rounded to the step
    assert submit(135) == pytest.approx(0.6)  # 0.675 beats 0.6 by less than the step
    assert submit(150) == pytest.approx(0.8)  # 0.75 beats it by more: shown as 0.8
    assert submit(20) == pytest.approx(0.8)  # worse: the board stays
    [entry] = host.board(comp["id"])["entries"]
    assert entry["score"] == pytest.approx(0.8) and entry["submissions"] == 4
    mine = me.get(f"/competitions/{comp['id']}/submissions").json()["submissions"]
    assert [s["public_score"] for s in mine] == pytest.approx([0.8] * 4)
    exact = host.get(f"/competitions/{comp['id']}/submissions").json()["submissions"]
    assert sorted(s["public_score"] for s in exact) == pytest.approx([0.1, 0.565, 0.675, 0.75])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("public_scoring", "stairs", "'public_scoring' must be one of plain, ladder"),
        ("ladder_step", 0, "'ladder_step'"),
        ("ladder_step", "big", "'ladder_step'"),
    ],
)
def test_bad_ladder_settings_are_refused(
    sqlite_server: ServerProcess, field: str, value: object, message: str
) -> None:
    """A 400 that names the field."""
    host = Api(sqlite_server)
    rows = 10
    spec = {
        "type": "classify",
        "title": "bad ladder",
        "targets": ["label"],
        "dataset": {"columns": ["id", "x"], "data": [[i, 0.0] for i in range(rows)]},
        "answer": {"columns": ["id", "label"], "data": [[i, "a"] for i in range(rows)]},
        field: value,
    }
    r = host.post("/competitions", json=spec)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]


def test_competitions_made_before_the_ladder_keep_a_plain_board(database: str) -> None:
    """Migration 0005 gives existing competitions the plain board (and the default step)."""
    engine = database_at(database, "0002")
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT public_scoring, ladder_step FROM competitions")).one()
    engine.dispose()
    assert tuple(row) == ("plain", 0.01)


def test_every_face_can_host_a_ladder(sqlite_server: ServerProcess, tmp_path: Path) -> None:
    """The client's keyword and the command line's flags make a Ladder competition."""
    client = Client(sqlite_server.url, token=Api(sqlite_server).token)
    ids = np.arange(20)
    dataset = pd.DataFrame({"id": ids, "x": np.zeros(20)})
    answer = pd.DataFrame({"id": ids, "label": ["a", "b"] * 10})
    comp = client.host(
        dataset, answer, metric="accuracy", public_scoring="ladder", ladder_step=0.05
    )
    assert (comp.public_scoring, comp.ladder_step) == ("ladder", 0.05)
    dataset.to_csv(tmp_path / "dataset.csv", index=False)
    answer.to_csv(tmp_path / "answer.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CROWDSOURCE_")}
    env |= {"CROWDSOURCE_URL": sqlite_server.url, "CROWDSOURCE_TOKEN": client.token or ""}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    args = ["host", "--dataset", "dataset.csv", "--answer", "answer.csv", "--metric", "accuracy"]
    done = subprocess.run(
        [sys.executable, "-m", "crowdsource.cli", "--json", *args, "--public-scoring", "ladder"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    assert (made["public_scoring"], made["ladder_step"]) == ("ladder", 0.01)
