"""The Python client against real servers (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import stat
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import crowdsource.client as CC
from tests.support import ServerProcess, refusing_port


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    """Keep credentials in a temporary folder; ignore the caller's environment."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)
    monkeypatch.delenv("CROWDSOURCE_URL", raising=False)
    return tmp_path / "config"


def frames(rows: int = 20) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small classify dataset and its answer."""
    ids = np.arange(100, 100 + rows)
    dataset = pd.DataFrame({"id": ids, "x": np.linspace(-1, 1, rows)})
    return dataset, pd.DataFrame({"id": ids, "label": (dataset["x"] > 0).astype(int)})


def registered(server: ServerProcess, prefix: str = "c") -> CC.Client:
    """A client registered as a fresh participant."""
    client = CC.Client(server.url)
    client.register(f"{prefix}-{uuid.uuid4().hex[:12]}", save=False)
    return client


def hosted(server: ServerProcess, **options) -> tuple[CC.Client, CC.Competition]:
    """A host and a new accuracy-scored classify competition."""
    host = registered(server, "host")
    dataset, answer = frames()
    options.setdefault("metric", "accuracy")
    return host, host.host(dataset, answer, type="classify", title="t", **options)


def perfect(competition: CC.Competition) -> pd.DataFrame:
    """The right answer for a `frames()` competition."""
    answer = competition.template()
    answer["label"] = (competition.dataset["x"].to_numpy() > 0).astype(int)
    return answer


def test_all_is_explicit() -> None:
    """Every public name is exported and nothing else."""
    public = {n for n in dir(CC) if not n.startswith("_") and n[0].isupper()}
    assert public == set(CC.__all__)


def test_seed_snippet(server: ServerProcess) -> None:
    """The seed README's client snippet works in that shape."""
    client = CC.Client(server.url.removeprefix("http://"))
    client.register()
    assert client.participant["name"] in set(client.users()["name"])
    assert isinstance(client.competitions(), list)
    assert isinstance(client.leaderboards(), pd.DataFrame)
    competitor = client.compete("classify", lambda c: c.template())
    assert competitor.wait_connected(10)
    competitor.stop()


def test_register_saves_credentials_with_mode_600(sqlite_server, config_dir) -> None:
    """A later Client on the same server finds the token in the credentials file."""
    data = CC.Client(sqlite_server.url).register("saved-" + uuid.uuid4().hex[:12])
    path = data["credentials_file"]
    assert path.startswith(str(config_dir))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert CC.Client(sqlite_server.url).me()["name"] == data["name"]


def test_token_from_environment(sqlite_server, monkeypatch) -> None:
    """CROWDSOURCE_URL and CROWDSOURCE_TOKEN configure a Client with no arguments."""
    data = sqlite_server.register()
    monkeypatch.setenv("CROWDSOURCE_URL", sqlite_server.url)
    monkeypatch.setenv("CROWDSOURCE_TOKEN", data["token"])
    assert CC.Client().me()["id"] == data["id"]


def test_host_and_read_back(server: ServerProcess) -> None:
    """A hosted competition reads back the same by id, in lists and as data."""
    host, competition = hosted(server)
    assert competition.status == "open" and competition.targets == ["label"]
    assert host.competition(competition.id).title == "t"
    assert competition.id in [c.id for c in host.competitions(type="classify", status="open")]
    pd.testing.assert_frame_equal(competition.dataset, frames()[0], check_dtype=False)


def test_template_has_ids_and_empty_targets(sqlite_server) -> None:
    """template() gives every dataset id and an empty target column."""
    _, competition = hosted(sqlite_server)
    template = competition.template()
    assert list(template.columns) == ["id", "label"]
    assert list(template["id"]) == list(frames()[0]["id"])
    assert template["label"].isna().all()


def test_submit_returns_scored_submission(server: ServerProcess) -> None:
    """A submission comes back scored, ranked, with the remaining quota."""
    _, competition = hosted(server, daily_limit=5)
    player = registered(server)
    sub = player.submit(competition.id, perfect(competition))
    assert (sub.state, sub.score, sub.rank, sub.remaining_today) == ("scored", 1.0, 1, 4)
    assert sub.quota_resets_at


def test_competition_submit_with_ids_in_index(sqlite_server) -> None:
    """Competition.submit accepts a frame keyed by its index."""
    _, competition = hosted(sqlite_server)
    player = registered(sqlite_server)
    mine = player.competition(competition.id)
    assert mine.submit(perfect(mine).set_index("id")).state == "scored"


def test_invalid_submission_carries_server_message(server: ServerProcess) -> None:
    """Missing ids come back as InvalidSubmission with the server's message."""
    _, competition = hosted(server)
    player = registered(server)
    with pytest.raises(CC.InvalidSubmission, match="missing") as info:
        player.submit(competition.id, perfect(competition).iloc[:5])
    assert info.value.status == 422


def test_missing_id_column_is_a_clear_error(sqlite_server) -> None:
    """A frame without the id column names the column to add (the server's words, which
    the pre-flight check says too)."""
    _, competition = hosted(sqlite_server)
    player = registered(sqlite_server)
    mine = player.competition(competition.id)
    with pytest.raises(CC.InvalidSubmission, match="need the id column 'id'") as info:
        mine.submit(perfect(mine).drop(columns="id"))
    assert info.value.status == 422
    with pytest.raises(CC.InvalidSubmission, match="need the id column 'id'"):
        mine.check(perfect(mine).drop(columns="id"))


def test_host_needs_id_column(sqlite_server) -> None:
    """Hosting a dataset without its id column fails before anything is sent."""
    host = registered(sqlite_server)
    with pytest.raises(CC.InvalidCompetition, match="'key'"):
        host.host(frames()[0], frames()[1], id_column="key")


def test_host_cannot_submit(sqlite_server) -> None:
    """The server forbids a host to submit to their own competition."""
    host, competition = hosted(sqlite_server)
    with pytest.raises(CC.Forbidden):
        host.submit(competition.id, perfect(competition))


def test_leaderboard_is_a_frame(server: ServerProcess) -> None:
    """The leaderboard frame ranks participants, and leaderboards() holds every board."""
    _, competition = hosted(server)
    good, bad = registered(server, "good"), registered(server, "bad")
    good.submit(competition.id, perfect(competition))
    bad.submit(competition.id, perfect(competition).assign(label=0))
    board = good.leaderboard(competition.id)
    assert list(board["participant"]) == [good.participant["name"], bad.participant["name"]]
    assert list(board["rank"]) == [1, 2] and board.attrs["metric"] == "accuracy"
    everything = good.leaderboards()
    assert len(everything[everything["competition_id"] == competition.id]) == 2


def test_submissions_and_predictions(server: ServerProcess) -> None:
    """Your own submissions list, read back one by one, with their predictions."""
    _, competition = hosted(server)
    player = registered(server)
    sub = player.submit(competition.id, perfect(competition))
    assert [s.id for s in player.submissions()] == [sub.id]
    assert [s.id for s in player.submissions(competition.id)] == [sub.id]
    assert player.submission(sub.id).score == 1.0
    assert len(player.predictions(sub.id)) == 20


def test_resolve_rescores_predict_rounds(server: ServerProcess) -> None:
    """A predict round scores once answer rows arrive."""
    host = registered(server, "host")
    competition = host.host(frames()[0], None, type="predict", targets=["y"], metric="mae")
    player = registered(server)
    sub = player.submit(competition.id, competition.template().assign(y=1.0))
    assert sub.state == "awaiting_answer"
    result = host.resolve(competition.id, frames()[0][["id"]].assign(y=3.0))
    assert result["answer_rows"] == 20 and result["rescored"] == 1
    assert player.submission(sub.id).score == pytest.approx(2.0)
    assert len(host.answer(competition.id)) == 20


def test_close_then_submit_is_closed(sqlite_server) -> None:
    """After close, a submission is refused as Closed."""
    host, competition = hosted(sqlite_server)
    assert host.close_competition(competition.id).status == "closed"
    with pytest.raises(CC.Closed):
        registered(sqlite_server).submit(competition.id, perfect(competition))


def test_quota_exceeded_says_when_it_resets(sqlite_server) -> None:
    """The daily limit answers QuotaExceeded with resets_at, and how long to wait."""
    _, competition = hosted(sqlite_server, daily_limit=1)
    player = registered(sqlite_server)
    player.submit(competition.id, perfect(competition))
    with pytest.raises(CC.QuotaExceeded) as info:
        player.submit(competition.id, perfect(competition))
    assert info.value.resets_at
    assert 0 < (info.value.retry_after or 0) <= 24 * 3600 + 1  # seconds until it resets


def test_upcoming_competition(sqlite_server) -> None:
    """opens_at in the future makes an upcoming competition."""
    host = registered(sqlite_server)
    soon = datetime.now(timezone.utc) + timedelta(hours=1)
    competition = host.host(*frames(), metric="accuracy", opens_at=soon)
    assert competition.status == "upcoming"


def test_events_start_with_hello(sqlite_server) -> None:
    """The event stream says hello, then reports a new competition."""
    with CC.Client(sqlite_server.url).events() as stream:
        assert stream.receive(timeout=10).type == "hello"
        _, competition = hosted(sqlite_server)
        event = stream.receive(timeout=10)
        while event.type != "competition.created":
            event = stream.receive(timeout=10)
    assert event.competition_id == competition.id


def test_wait_for_leaderboard(sqlite_server) -> None:
    """wait_for_leaderboard returns once the board has the entries asked for."""
    host, competition = hosted(sqlite_server)
    registered(sqlite_server).submit(competition.id, perfect(competition))
    assert len(host.wait_for_leaderboard(competition.id, entries=1, timeout=10)) == 1
    with pytest.raises(CC.Timeout):
        host.wait_for_leaderboard(competition.id, entries=2, timeout=0.5)


def test_large_frames_travel_with_progress(sqlite_server, capsys) -> None:
    """A dataset over the progress threshold uploads and downloads with a bar."""
    rows = 400_000
    dataset = pd.DataFrame({"id": np.arange(rows), "x": np.random.default_rng(0).random(rows)})
    answer = dataset[["id"]].assign(y=dataset["x"])
    host = CC.Client(sqlite_server.url, progress=True)
    host.register("big-" + uuid.uuid4().hex[:12], save=False)
    competition = host.host(dataset, answer, type="regress")
    assert len(host.dataset(competition.id)) == rows
    assert "upload" in capsys.readouterr().err


def test_unreachable_server_is_one_line() -> None:
    """A server that does not answer gives ConnectionFailed naming the URL."""
    with refusing_port() as port, pytest.raises(CC.ConnectionFailed, match="cannot reach") as info:
        CC.Client(f"127.0.0.1:{port}").competitions()
    assert "\n" not in str(info.value) and "127.0.0.1" in str(info.value)


def test_bad_url_is_rejected() -> None:
    """A URL that is not a server URL fails at once."""
    with pytest.raises(CC.ConnectionFailed, match="not a server URL"):
        CC.Client("ftp://example.org")


def test_bad_token_is_unauthorized(sqlite_server) -> None:
    """An unknown token is Unauthorized, with the server's message."""
    with pytest.raises(CC.Unauthorized):
        CC.Client(sqlite_server.url, token="nope").me()


def test_no_token_hints_at_register(sqlite_server) -> None:
    """Without a token, the error says how to get one."""
    with pytest.raises(CC.Unauthorized, match="crowdsource register"):
        CC.Client(sqlite_server.url).submissions()


def test_unknown_competition_is_not_found(sqlite_server) -> None:
    """A missing competition is NotFound."""
    with pytest.raises(CC.NotFound):
        CC.Client(sqlite_server.url).competition(987654)


def test_wait_for_leaderboard_times_out_through_pings(new_server, tmp_path) -> None:
    """A board nobody enters: `wait_for_leaderboard(timeout=2)` raises Timeout, though the
    server pings the stream four times a second and so never lets its socket go quiet."""
    server = new_server(str(tmp_path / "pings.db"), "--ping-interval=0.25")
    host, competition = hosted(server)
    with pytest.raises(CC.Timeout, match=r"0 of 1 leaderboard entries after 2"):
        host.wait_for_leaderboard(competition.id, timeout=2)


def test_wait_for_leaderboard_returns_the_board(sqlite_server) -> None:
    """Once someone is scored, the wait returns the board with them on it."""
    host, competition = hosted(sqlite_server)
    player = registered(sqlite_server, "player")
    player.submit(competition.id, perfect(player.competition(competition.id)))
    board = host.wait_for_leaderboard(competition.id, timeout=60)
    assert list(board["participant"]) == [player.participant["name"]]
