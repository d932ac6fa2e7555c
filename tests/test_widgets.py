"""The notebook widgets against a real server and its real event stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crowdsource.client import Client, Competition
from crowdsource.notebook.browser import CompetitionBrowser
from crowdsource.notebook.leaderboard import LeaderboardWidget
from tests.support import ServerProcess


def joined(server: ServerProcess, prefix: str) -> Client:
    """A client registered as a new participant (token not saved)."""
    client = Client(server.url, progress=False)
    client.register(f"{prefix}-{uuid.uuid4().hex[:12]}", save=False)
    return client


@pytest.fixture
def host(sqlite_server: ServerProcess) -> Client:
    """A host's client."""
    return joined(sqlite_server, "host")


@pytest.fixture
def competition(host: Client) -> Competition:
    """A small regression competition (rmse: lower is better)."""
    data = pd.DataFrame({"id": range(20), "x": np.arange(20.0)})
    answer = pd.DataFrame({"id": range(20), "y": np.arange(20.0) * 2})
    return host.host(data, answer, type="regress", title="Double it", metric="rmse")


@pytest.fixture
def board(host: Client, competition: Competition) -> Iterator[LeaderboardWidget]:
    """A live leaderboard widget on the competition, stopped after the test."""
    widget = LeaderboardWidget(competition, client=host, interval=0.05)
    yield widget
    widget.stop()


def guess(competition: Competition, factor: float) -> pd.DataFrame:
    """Predictions y = factor * x."""
    frame = competition.dataset[["id", "x"]]
    return pd.DataFrame({"id": frame["id"], "y": frame["x"] * factor})


def names(widget: LeaderboardWidget) -> list[str]:
    """The entries' names on the widget's board traitlet, in order."""
    return [entry["name"] for entry in widget.board["entries"]]


# -- LeaderboardWidget -----------------------------------------------------------------------------


def test_leaderboard_starts_empty_and_live(board: LeaderboardWidget, host: Client) -> None:
    """Before any submission: an empty board, the competition's view, the viewer's id."""
    assert board.wait(until=lambda frame: board.status == "live", timeout=10)
    assert board.board["entries"] == [] and board.board["total"] == 0
    assert board.competition["title"] == "Double it"
    assert board.server_url == host.url
    assert board.me == host.participant["id"]  # type: ignore[index]


def test_board_changes_when_a_submission_is_scored(
    sqlite_server: ServerProcess, board: LeaderboardWidget, competition: Competition
) -> None:
    """A scored submission reaches the board traitlet through the event stream."""
    bob = joined(sqlite_server, "bob")
    bob.submit(competition.id, guess(competition, 1.5))
    assert board.wait(entries=1, timeout=20)
    (entry,) = board.board["entries"]
    assert entry["name"] == bob.participant["name"]  # type: ignore[index]
    assert entry["rank"] == 1 and entry["submissions"] == 1
    assert entry["score"] == pytest.approx(np.sqrt(np.mean((np.arange(20.0) * 0.5) ** 2)))
    assert board.board["metric"] == "rmse" and board.board["higher_is_better"] is False


def test_ranking_and_history_move(
    sqlite_server: ServerProcess, board: LeaderboardWidget, competition: Competition
) -> None:
    """A better submission re-ranks the board and adds a point to its history."""
    bob, eve = joined(sqlite_server, "bob"), joined(sqlite_server, "eve")
    bob.submit(competition.id, guess(competition, 1.5))
    eve.submit(competition.id, guess(competition, 1.0))
    assert board.wait(entries=2, timeout=20)
    assert names(board)[0] == bob.participant["name"]  # type: ignore[index]
    eve.submit(competition.id, guess(competition, 2.0))
    name = eve.participant["name"]  # type: ignore[index]
    assert board.wait(until=lambda frame: frame["participant"].iloc[0] == name)
    assert board.wait(until=lambda frame: len(board.history) == 3)
    eve_points = [p["score"] for p in board.history if p["name"] == name]
    assert eve_points == pytest.approx([np.sqrt(np.mean(np.arange(20.0) ** 2)), 0])
    assert board.history_frame["participant"].tolist().count(name) == 2


def test_names_are_kept_as_given(
    sqlite_server: ServerProcess, board: LeaderboardWidget, competition: Competition
) -> None:
    """A name holding markup reaches the traitlets unchanged (the browser draws it as text)."""
    name = f'<a href="https://x.test">claim</a><b>x</b>{uuid.uuid4().hex[:6]}'
    player = Client(sqlite_server.url, progress=False)
    player.register(name, save=False)
    player.submit(competition.id, guess(competition, 2.0))
    assert board.wait(entries=1, timeout=20)
    assert names(board) == [name]
    assert board.wait(until=lambda frame: [p["name"] for p in board.history] == [name])


def test_predict_round_moves_when_answers_arrive(
    sqlite_server: ServerProcess, host: Client
) -> None:
    """Answer rows arriving later re-score submissions; the widget follows."""
    days = pd.DataFrame({"id": range(4), "day": range(4)})
    round_ = host.host(days, None, type="predict", targets=["value"], title="Later")
    widget = LeaderboardWidget(round_, client=host, interval=0.05)
    try:
        low, high = joined(sqlite_server, "low"), joined(sqlite_server, "high")
        low.submit(round_.id, days[["id"]].assign(value=1.0))
        high.submit(round_.id, days[["id"]].assign(value=3.0))
        host.resolve(round_.id, pd.DataFrame({"id": [0], "value": [1.0]}))
        first = low.participant["name"]  # type: ignore[index]
        assert widget.wait(until=lambda b: len(b) == 2 and b["participant"].iloc[0] == first)
        host.resolve(round_.id, pd.DataFrame({"id": [0, 1, 2, 3], "value": [3.0] * 4}))
        then = high.participant["name"]  # type: ignore[index]
        assert widget.wait(until=lambda b: b["participant"].iloc[0] == then)
    finally:
        widget.stop()


def test_stop_is_idempotent(board: LeaderboardWidget) -> None:
    """stop() twice is fine; the widget then says it stopped."""
    board.stop()
    board.stop()
    assert not board.live
    assert board.status == "stopped"


def test_static_board(sqlite_server: ServerProcess, host: Client, competition: Competition) -> None:
    """live=False shows the board once and follows nothing."""
    joined(sqlite_server, "early").submit(competition.id, guess(competition, 1.0))
    widget = LeaderboardWidget(competition.id, client=host, live=False)
    assert not widget.live
    assert widget.status == "static (not live)"
    assert len(widget.board["entries"]) == 1


def test_a_missing_browser_module_says_how_to_build_it(
    host: Client, competition: Competition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the built widget.js the widget is one error naming the build command."""
    from crowdsource.notebook import leaderboard

    monkeypatch.setattr(leaderboard, "ESM", tmp_path / "widget.js")
    with pytest.raises(RuntimeError, match="jlpm install && jlpm build"):
        LeaderboardWidget(competition, client=host, live=False)


# -- CompetitionBrowser ----------------------------------------------------------------------------


@pytest.fixture
def namespace(competition: Competition) -> dict[str, object]:
    """A notebook namespace with good, partial and non-frame predictions."""
    good = guess(competition, 2.0)
    return {"good": good, "partial": good.head(5), "numbers": [1, 2], "_hidden": good}


@pytest.fixture
def browser(
    sqlite_server: ServerProcess, competition: Competition, namespace: dict[str, object]
) -> CompetitionBrowser:
    """A browser as a participant, with the competition selected."""
    widget = CompetitionBrowser(client=joined(sqlite_server, "browser"), namespace=namespace)
    widget.picker.value = competition.id
    return widget


def test_browser_lists_and_shows(browser: CompetitionBrowser, competition: Competition) -> None:
    """The list holds the competition; picking it shows details and a dataset preview."""
    assert competition.id in [value for _, value in browser.picker.options]
    assert "Double it" in browser.details.value
    assert "first 5" in browser.preview.value
    assert browser.variable.options == ("good", "partial")


def test_browser_downloads_template(browser: CompetitionBrowser, tmp_path: Path) -> None:
    """The template button writes ids with an empty target column."""
    path = tmp_path / "template.csv"
    browser.template_path.value = str(path)
    browser.download_button.click()
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "y"]
    assert len(frame) == 20
    assert "wrote 20 rows" in browser.result.value


def test_browser_submits_a_variable(browser: CompetitionBrowser) -> None:
    """Submit shows score and rank from the server."""
    browser.variable.value = "good"
    browser.submit_button.click()
    assert browser.last_submission.state == "scored"
    assert "public score <b>0</b>" in browser.result.value
    assert "rank <b>1</b>" in browser.result.value


def test_browser_shows_mistakes(browser: CompetitionBrowser) -> None:
    """Missing ids and non-frames appear as one red line, not an exception."""
    browser.variable.value = "partial"
    browser.submit_button.click()
    assert "15 ids missing" in browser.result.value
    assert "#b00020" in browser.result.value
    browser.namespace["good"] = "not a frame"
    browser.variable.value = "good"
    browser.submit_button.click()
    assert "is a str, not a DataFrame" in browser.result.value
