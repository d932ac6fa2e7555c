"""Final submissions: the private board ranks each participant's final submissions only, so
spamming random submissions cannot win it (real servers, SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score
from sqlalchemy import create_engine, text

from crowdsource.server.finals import Candidate, best_private, counted
from crowdsource.server.scoring.score import public_mask
from crowdsource.server.storage.engine import database_url, migrate
from crowdsource.times import utcnow
from tests.api import Api, classify_data
from tests.support import ServerProcess, database_at

CLASSES = ("a", "b", "c")


def labels(ids: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """A labels submission."""
    return pd.DataFrame({"id": ids, "label": values})


def split_of(server: ServerProcess, competition_id: int, ids: np.ndarray) -> np.ndarray:
    """Which ids are public: the competition's salted split, read from its database."""
    engine = create_engine(database_url(server.db))
    try:
        with engine.connect() as conn:
            salt = conn.execute(
                text("SELECT split_salt FROM competitions WHERE id = :id"), {"id": competition_id}
            ).scalar_one()
    finally:
        engine.dispose()
    return public_mask(ids, fraction=0.5, salt=salt)


def spam_world(server: ServerProcess, *, finals: int = 2) -> dict:
    """A host, an honest participant with one good submission and a spammer with 25 random
    ones, on a classify competition split half public, half private."""
    host, honest, spammer = Api(server), Api(server), Api(server)
    dataset, answer = classify_data(300, CLASSES, seed=11)
    comp = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        public_fraction=0.5,
        final_submissions=finals,
    )
    rng = np.random.default_rng(5)
    ids, truth = answer["id"].to_numpy(), answer["label"].to_numpy()
    good = np.where(rng.random(len(ids)) < 0.25, rng.choice(CLASSES, len(ids)), truth)
    assert honest.submit(comp["id"], labels(ids, good)).status_code == 201
    spam = []
    for _ in range(25):
        guess = rng.choice(CLASSES, len(ids))
        r = spammer.submit(comp["id"], labels(ids, guess))
        assert r.status_code == 201, r.text
        spam.append((r.json()["id"], guess))
    public = split_of(server, comp["id"], ids)
    scores = {  # every spam submission scored by scikit-learn, on each part
        sid: (
            accuracy_score(truth[public], guess[public]),
            accuracy_score(truth[~public], guess[~public]),
        )
        for sid, guess in spam
    }
    return {"host": host, "honest": honest, "spammer": spammer, "comp": comp, "scores": scores}


def close(world: dict) -> None:
    """The host closes the competition."""
    r = world["host"].post(f"/competitions/{world['comp']['id']}/close")
    assert r.status_code == 200, r.text


def private_entry(world: dict, who: Api) -> dict:
    """`who`'s entry on the private board."""
    board = world["honest"].board(world["comp"]["id"], "private")
    [entry] = [e for e in board["entries"] if e["participant"]["id"] == who.id]
    return entry


def test_spamming_does_not_win_the_private_board(server: ServerProcess) -> None:
    """Without a selection, the spammer's private entry is the best private score of their two
    best public submissions, not the best of all 25; the honest one wins."""
    world = spam_world(server)
    scores = world["scores"]
    by_public = sorted(scores, key=lambda sid: (-scores[sid][0], sid))[:2]
    expected = max(scores[sid][1] for sid in by_public)
    best_of_all = max(private for _, private in scores.values())
    final = world["spammer"].get(f"/competitions/{world['comp']['id']}/final").json()
    assert final == {
        "competition_id": world["comp"]["id"],
        "limit": 2,
        "selected": False,
        "submissions": by_public,
    }
    close(world)
    entry = private_entry(world, world["spammer"])
    assert entry["score"] == pytest.approx(expected)
    assert entry["submissions"] == 25
    board = world["honest"].board(world["comp"]["id"], "private")
    assert board["entries"][0]["participant"]["id"] == world["honest"].id
    if best_of_all != expected:  # what the board showed before: the luck of 25 draws
        assert entry["score"] < best_of_all


def test_selected_finals_count_instead(server: ServerProcess) -> None:
    """A selection replaces the default: the private entry is the best of the selected."""
    world = spam_world(server)
    cid, spammer, scores = world["comp"]["id"], world["spammer"], world["scores"]
    worst = sorted(scores, key=lambda sid: (scores[sid][0], sid))[:2]
    r = spammer.session.put(
        f"{spammer.url}/api/v1/competitions/{cid}/final", json={"submissions": worst}
    )
    assert r.status_code == 200, r.text
    assert r.json()["selected"] and sorted(r.json()["submissions"]) == sorted(worst)
    close(world)
    expected = max(scores[sid][1] for sid in worst)
    assert private_entry(world, spammer)["score"] == pytest.approx(expected)


def test_selection_rules(server: ServerProcess) -> None:
    """At most N of your own submissions; an empty selection goes back to the default; the
    selection closes with the competition, with a message."""
    world = spam_world(server, finals=1)
    cid, spammer, honest = world["comp"]["id"], world["spammer"], world["honest"]
    url = f"{spammer.url}/api/v1/competitions/{cid}/final"
    mine = list(world["scores"])
    too_many = spammer.session.put(url, json={"submissions": mine[:2]})
    assert too_many.status_code == 400
    assert "at most 1 final submissions" in too_many.json()["message"]
    theirs = honest.get(f"/competitions/{cid}/submissions").json()["submissions"][0]["id"]
    foreign = spammer.session.put(url, json={"submissions": [theirs]})
    assert foreign.status_code == 400 and "not a scored or pending" in foreign.json()["message"]
    assert spammer.session.put(url, json={"submissions": "all"}).status_code == 400
    assert spammer.session.put(url, json={"submissions": [mine[3]]}).json()["selected"]
    cleared = spammer.session.put(url, json={"submissions": []}).json()
    assert not cleared["selected"] and len(cleared["submissions"]) == 1
    close(world)
    late = spammer.session.put(url, json={"submissions": [mine[0]]})
    assert late.status_code == 409
    assert "can no longer change" in late.json()["message"]


# -- the rule itself, for any submissions ---------------------------------------------------------

SCORE = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Candidate], set[int], int, bool]:
    """One participant's submissions, a selection among them, a limit and a direction."""
    subs = [
        Candidate(i, 1, draw(SCORE), draw(SCORE), utcnow())
        for i in range(1, draw(st.integers(1, 12)) + 1)
    ]
    limit = draw(st.integers(1, 4))
    selected = set(draw(st.lists(st.sampled_from([s.id for s in subs]), max_size=limit)))
    return subs, selected, limit, draw(st.booleans())


@given(histories())
def test_finals_are_the_selection_or_the_best_public(
    history: tuple[list[Candidate], set[int], int, bool],
) -> None:
    """The counted submissions are the selection if any, else `limit` of them that no
    uncounted one beats on the public score; the private entry is the best among them."""
    subs, selected, limit, higher = history
    finals = counted(subs, selected=selected, limit=limit, higher_is_better=higher)
    if selected:
        assert {c.id for c in finals} == selected
    else:
        assert len(finals) == min(limit, len(subs))
        sign = 1 if higher else -1
        left_out = [c for c in subs if c not in finals and c.public_score is not None]
        for kept in finals:
            for other in left_out:
                assert kept.public_score is not None
                assert sign * kept.public_score >= sign * other.public_score
    best = best_private(finals, higher_is_better=higher)
    privates = [c.private_score for c in finals if c.private_score is not None]
    assert (best is None) == (not privates)
    if best is not None:
        assert best.private_score == (max(privates) if higher else min(privates))


def test_a_database_of_the_first_schema_upgrades(database: str) -> None:
    """A database made before final submissions upgrades in place: its competitions get two
    finals each, nobody disqualified, and its old private entries (best of all) are gone."""
    engine = database_at(database, "0001")
    now = utcnow().replace(tzinfo=None)
    with engine.begin() as conn:
        for board in ("public", "private"):
            conn.execute(
                text("INSERT INTO entries VALUES (1, :b, 1, 0.5, NULL, 1, :t)"),
                {"b": board, "t": now},
            )
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT final_submissions, archived, disqualified, revision FROM competitions")
        ).one()
        boards = conn.execute(text("SELECT board FROM entries")).scalars().all()
    engine.dispose()
    assert (row[0], bool(row[1]), row[3]) == (2, False, 0)
    assert row[2] in ({}, "{}")
    assert boards == ["public"]
