"""The host's tools through the API and the Python client, on real servers (SQLite and
PostgreSQL): every submission, CSV export, edit and reopen, delete or archive, disqualify."""

from __future__ import annotations

import io
import uuid
from contextlib import closing
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import websocket

import crowdsource.client as CC
from crowdsource.times import from_now
from tests.api import events_url, read_event
from tests.live import Follower
from tests.support import ServerProcess

IDS = np.arange(1, 41)
DATASET = pd.DataFrame({"id": IDS, "x": np.linspace(-1, 1, len(IDS))})
ANSWER = pd.DataFrame({"id": IDS, "label": (DATASET["x"] > 0).astype(int)})


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Keep credentials in a temporary folder; ignore the caller's environment."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)


def client(server: ServerProcess) -> CC.Client:
    """A client registered as a fresh participant."""
    made = CC.Client(server.url, progress=False)
    made.register(f"p-{uuid.uuid4().hex[:12]}", save=False)
    return made


def guess(right: float, seed: int = 0) -> pd.DataFrame:
    """Labels that are right for about the `right` share of rows."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(len(IDS)) > right
    return pd.DataFrame({"id": IDS, "label": np.where(wrong, 1 - ANSWER["label"], ANSWER["label"])})


def competition(host: CC.Client, **options) -> CC.Competition:
    """A small accuracy-scored competition, half public."""
    options.setdefault("public_fraction", 0.5)
    return host.host(DATASET, ANSWER, type="classify", metric="accuracy", title="t", **options)


def board_event(ws, wanted) -> dict:
    """The live board (kept from snapshots and deltas) once `wanted` accepts it."""
    follower = Follower(ws).until(lambda f: wanted({**f.board, "entries": f.entries}))
    return {**follower.board, "entries": follower.entries}


def refused(call, status: int, words: str) -> None:
    """`call()` fails with this status and a message holding `words`."""
    with pytest.raises(CC.CrowdsourceError) as info:
        call()
    assert info.value.status == status, info.value
    assert words in str(info.value)


def test_host_sees_every_submission_and_after_close_the_private_scores(server) -> None:
    """The host lists everyone's submissions; private scores and predictions after close."""
    host, ann, bob = client(server), client(server), client(server)
    comp = competition(host)
    first = ann.submit(comp.id, guess(0.9, 1))
    bob.submit(comp.id, guess(0.6, 2))
    seen = host.submissions(comp.id)
    assert {s.participant["name"] for s in seen} == {
        ann.participant["name"],
        bob.participant["name"],
    }
    assert all(s.state == "scored" and s.public_score is not None for s in seen)
    assert all(s.private_score is None and s.final for s in seen)
    assert [s.id for s in ann.submissions(comp.id)] == [first.id]  # others see their own
    refused(lambda: host.predictions(first.id), 403, "once competition")
    host.close_competition(comp.id)
    assert all(s.private_score is not None for s in host.submissions(comp.id))
    pd.testing.assert_frame_equal(host.predictions(first.id), guess(0.9, 1))
    refused(lambda: bob.predictions(first.id), 404, "no submission")


def test_leaderboard_as_csv(server) -> None:
    """`Accept: text/csv` exports the board; it holds what the JSON board holds."""
    host, ann, bob = client(server), client(server), client(server)
    comp = competition(host)
    ann.submit(comp.id, guess(0.9, 1))
    bob.submit(comp.id, guess(0.5, 2))
    exported = pd.read_csv(io.StringIO(host.leaderboard_csv(comp.id)))
    frame = host.leaderboard(comp.id)
    assert list(exported.columns) == list(frame.columns)
    assert exported["participant"].tolist() == frame["participant"].tolist()
    assert exported["score"].to_numpy() == pytest.approx(frame["score"].to_numpy())
    refused(lambda: ann.leaderboard_csv(comp.id, board="private"), 403, "after it closes")


def test_edit_and_reopen(server) -> None:
    """The host edits title, description and limit; a later close time reopens a closed
    competition, and the close timer follows the new time."""
    host, ann = client(server), client(server)
    comp = competition(host)
    edited = host.edit_competition(comp.id, title="Better", description="new", daily_limit=1)
    assert (edited.title, edited.description, edited.daily_limit) == ("Better", "new", 1)
    ann.submit(comp.id, guess(0.9))
    refused(lambda: ann.submit(comp.id, guess(0.8)), 429, "all 1 submissions")
    assert host.edit_competition(comp.id, daily_limit=None).daily_limit is None
    host.close_competition(comp.id)
    refused(lambda: ann.submit(comp.id, guess(0.8)), 409, "closed at")
    with closing(websocket.create_connection(events_url(server, competition=comp.id))) as ws:
        reopened = host.reopen(comp.id, closes_at=timedelta(seconds=6))
        assert reopened.status == "open"
        assert read_event(ws, "competition.updated", timeout=30)["data"]["reopened"]
        assert ann.submit(comp.id, guess(0.8)).state == "scored"
        closed = read_event(ws, "competition.closed", timeout=60)
    assert closed["data"]["status"] == "closed"


def test_edits_are_checked_and_host_only(server) -> None:
    """Bad edits say what to fix; others are refused with a 403 that says why."""
    host, ann = client(server), client(server)
    comp = competition(host)
    refused(lambda: host.edit_competition(comp.id, title=""), 400, "'title'")
    refused(
        lambda: host.edit_competition(comp.id, closes_at=from_now(timedelta(hours=-1))),
        400,
        "in the future",
    )
    refused(
        lambda: host.request("PATCH", f"/competitions/{comp.id}", json={"rows": 3}),
        400,
        "cannot be edited",
    )
    for call in (
        lambda: ann.edit_competition(comp.id, title="mine"),
        lambda: ann.delete_competition(comp.id),
        lambda: ann.disqualify(comp.id, participant=host.participant["id"], reason="x"),
        lambda: ann.disqualified(comp.id),
    ):
        refused(call, 403, f"only the host of competition {comp.id}")


def test_delete_without_submissions_archive_with(server) -> None:
    """No submissions: deleted. With submissions: archived, hidden from lists, readable by
    id, not open."""
    host, ann = client(server), client(server)
    empty = competition(host)
    assert host.delete_competition(empty.id) == {"id": empty.id, "deleted": True, "archived": False}
    refused(lambda: host.competition(empty.id), 404, f"no competition {empty.id}")
    refused(lambda: ann.dataset(empty.id), 404, f"no competition {empty.id}")
    used = competition(host)
    ann.submit(used.id, guess(0.9))
    assert host.delete_competition(used.id)["archived"]
    assert used.id not in [c.id for c in ann.competitions()]
    kept = ann.competition(used.id)
    assert kept.archived and kept.status == "closed"
    refused(lambda: ann.submit(used.id, guess(0.9)), 409, "closed at")
    assert len(ann.leaderboard(used.id, board="private")) == 1
    refused(lambda: host.edit_competition(used.id, title="again"), 409, "archived")


def test_disqualified_participant_leaves_the_boards(server) -> None:
    """A disqualified participant is hidden from both boards and their submissions are
    refused with the host's reason; the live board says so at once; lifting it restores."""
    host, ann, bob = client(server), client(server), client(server)
    comp = competition(host)
    ann.submit(comp.id, guess(0.9, 1))
    bob.submit(comp.id, guess(0.5, 2))
    with closing(websocket.create_connection(events_url(server, competition=comp.id))) as ws:
        done = host.disqualify(comp.id, participant=ann.participant["name"], reason="shared labels")
        names = [bob.participant["name"]]
        board = board_event(ws, lambda b: [e["participant"]["name"] for e in b["entries"]] == names)
    assert done["participant"]["id"] == ann.participant["id"]
    assert board["title"] == "t"
    assert host.disqualified(comp.id) == [done]
    refused(lambda: ann.submit(comp.id, guess(1.0)), 403, "disqualified from competition")
    refused(lambda: ann.submit(comp.id, guess(1.0)), 403, "shared labels")
    refused(lambda: ann.select_final(comp.id, submissions=[]), 403, "shared labels")
    refused(
        lambda: host.disqualify(comp.id, participant="nobody-" + uuid.uuid4().hex, reason="x"),
        404,
        "no participant",
    )
    host.close_competition(comp.id)
    assert ann.participant["name"] not in set(bob.leaderboard(comp.id, board="private").participant)
    host.requalify(comp.id, participant=ann.participant["id"])
    assert bob.leaderboard(comp.id)["participant"].iloc[0] == ann.participant["name"]


def test_final_submissions_through_the_client(server) -> None:
    """A participant reads and selects final submissions; the limit is the host's."""
    host, ann = client(server), client(server)
    comp = competition(host, final_submissions=1)
    assert comp.final_submissions == 1
    good, bad = ann.submit(comp.id, guess(0.95, 1)), ann.submit(comp.id, guess(0.3, 2))
    assert ann.final_submissions(comp.id)["submissions"] == [good.id]
    assert ann.competition(comp.id).select_final(submissions=[bad.id])["submissions"] == [bad.id]
    refused(lambda: ann.select_final(comp.id, submissions=[good.id, bad.id]), 400, "at most 1")
    host.close_competition(comp.id)
    private = ann.leaderboard(comp.id, board="private")
    assert private["score"].iloc[0] == pytest.approx(ann.submission(bad.id).private_score)


def test_live_board_follows_an_edit(server) -> None:
    """A renamed competition's live board carries the new title at once."""
    host, ann = client(server), client(server)
    comp = competition(host)
    ann.submit(comp.id, guess(0.9))
    with closing(websocket.create_connection(events_url(server, competition=comp.id))) as ws:
        host.edit_competition(comp.id, title="Renamed")
        board = board_event(ws, lambda b: b["title"] == "Renamed")
    assert [e["participant"]["name"] for e in board["entries"]] == [ann.participant["name"]]
