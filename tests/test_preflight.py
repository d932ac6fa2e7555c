"""The pre-flight check: `competition.check(frame)` says, word for word, what a real server's
422 would say of the same frame, and passes the frames that server accepts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crowdsource.client import Client, Competition, CrowdsourceError, InvalidSubmission
from tests.support import ServerProcess

ROWS = 12
CLASSES = ["a", "b", "c"]


def _unique(prefix: str) -> str:
    """A participant name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def arena(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real server without write limits (hypothesis submits a lot), three competitions of
    different answer shapes, and a participant to submit to them."""
    workdir = tmp_path_factory.mktemp("preflight")
    server = ServerProcess(str(workdir / "crowdsource.db"), workdir, "--write-rate=0").start()
    try:
        host = Client(server.url, progress=False)
        host.register(_unique("host"), save=False)
        rng = np.random.default_rng(3)
        ids = np.arange(100, 100 + ROWS)
        data = pd.DataFrame({"id": ids, "x": rng.normal(size=ROWS)})
        labels = pd.DataFrame({"id": ids, "label": [CLASSES[i % 3] for i in range(ROWS)]})
        text = pd.DataFrame({"key": [f"k{i}" for i in ids], "x": data["x"]})
        hosted = {
            "probabilities": host.host(data, labels, metric="logloss"),
            "labels": host.host(
                text,
                labels.rename(columns={"id": "key"}).assign(key=text["key"]),
                metric="accuracy",
                id_column="key",
            ),
            "values": host.host(
                data, data.rename(columns={"x": "y"}), type="regress", metric="rmse"
            ),
        }
        player = Client(server.url, progress=False)
        player.register(_unique("player"), save=False)
        mine = {need: player.competition(c.id) for need, c in hosted.items()}
        yield {"server": server, "player": player, "competitions": mine}
    finally:
        server.stop()


def good_frame(competition: Competition) -> pd.DataFrame:
    """Predictions that fit: the template filled in."""
    if competition.metric == "logloss":
        frame = competition.template(probabilities=True)
        frame[CLASSES] = 1 / 3
        return frame
    frame = competition.template()
    frame[competition.targets[0]] = "a" if competition.metric == "accuracy" else 1.5
    return frame


Mutation = Callable[[pd.DataFrame, Competition, Any], pd.DataFrame]


def _row(frame: pd.DataFrame, draw: Any) -> int:
    """A row position to spoil."""
    return int(draw(st.integers(0, len(frame) - 1)))


def _value_column(frame: pd.DataFrame, competition: Competition, draw: Any) -> str:
    """A prediction column to spoil."""
    columns = [c for c in frame.columns if c != competition.id_column]
    return str(draw(st.sampled_from(columns)))


def drop_rows(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """Ids missing."""
    keep = draw(st.lists(st.booleans(), min_size=len(frame), max_size=len(frame)))
    return frame[np.array(keep, dtype=bool)]


def extra_ids(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """Unknown ids."""
    rows = frame.sample(n=draw(st.integers(1, 3)), random_state=draw(st.integers(0, 99)))
    column = competition.id_column
    text = not pd.api.types.is_numeric_dtype(rows[column])
    rows[column] = [f"z{i}" if text else 9000 + i for i in range(len(rows))]
    return pd.concat([frame, rows], ignore_index=True)


def duplicates(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """Ids repeated (sometimes beyond the dataset's rows)."""
    rows = frame.iloc[draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=4))]
    return pd.concat([frame, rows], ignore_index=True)


def empty_id(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """An id left empty."""
    frame = frame.astype({competition.id_column: object})
    frame.iloc[_row(frame, draw), 0] = None
    return frame


def nan_value(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """An empty prediction."""
    frame = frame.copy()
    frame.loc[frame.index[_row(frame, draw)], _value_column(frame, competition, draw)] = np.nan
    return frame


def odd_value(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """A prediction out of range, of the wrong kind, or an unknown label."""
    frame = frame.astype({c: object for c in frame.columns if c != competition.id_column})
    value = draw(st.sampled_from([-0.5, 1.5, 0.9, 2.0, "z", "high", np.inf, 1e300, 7]))
    frame.loc[frame.index[_row(frame, draw)], _value_column(frame, competition, draw)] = value
    kinds = {type(v) for c in frame.columns[1:] for v in frame[c]}
    if len(kinds) > 1 and str in kinds:  # Parquet holds one type per column: text then
        frame = frame.astype({c: str for c in frame.columns[1:]})
    return frame.infer_objects()


def wrong_columns(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """A column renamed, dropped or added (the id column too)."""
    column = str(draw(st.sampled_from(list(frame.columns))))
    action = draw(st.sampled_from(["rename", "drop", "add"]))
    if action == "rename":
        return frame.rename(columns={column: column + "_x"})
    if action == "drop" and len(frame.columns) > 1:
        return frame.drop(columns=[column])
    return frame.assign(extra=0.5)


def float_ids(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """Integer ids sent as floats (fine) or fractions (not)."""
    if not pd.api.types.is_numeric_dtype(frame[competition.id_column]):
        return frame
    shift = draw(st.sampled_from([0.0, 0.5]))
    return frame.assign(**{competition.id_column: frame[competition.id_column] + shift})


def shuffled(frame: pd.DataFrame, competition: Competition, draw: Any) -> pd.DataFrame:
    """Rows in another order (fine: rows are matched by id)."""
    return frame.sample(frac=1.0, random_state=draw(st.integers(0, 99)))


MUTATIONS: list[Mutation] = [
    drop_rows,
    extra_ids,
    duplicates,
    empty_id,
    nan_value,
    odd_value,
    wrong_columns,
    float_ids,
    shuffled,
]


@st.composite
def cases(draw: Any, competitions: dict[str, Competition]) -> tuple[Competition, pd.DataFrame]:
    """A competition and a frame spoiled by a few random mutations (or none)."""
    competition = competitions[draw(st.sampled_from(sorted(competitions)))]
    frame = good_frame(competition)
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=3)):
        values = [c for c in frame.columns if c != competition.id_column]
        if len(frame) and values and competition.id_column in frame:  # else nothing to spoil
            frame = mutation(frame, competition, draw)
    return competition, frame


def outcome(call: Callable[[], Any]) -> tuple[str, str] | None:
    """None if `call` passes, else its error's type and message."""
    try:
        call()
    except CrowdsourceError as exc:
        return type(exc).__name__, exc.message
    return None


def test_check_says_what_the_server_says(arena: dict[str, Any]) -> None:
    """For random bad frames the local check's message is the server's 422, word for word;
    frames the server scores pass the check."""
    player: Client = arena["player"]
    seen: set[str] = set()

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases(arena["competitions"]))
    def agree(case: tuple[Competition, pd.DataFrame]) -> None:
        competition, frame = case
        local = outcome(lambda: competition.check(frame))
        server = outcome(lambda: player.submit(competition.id, frame))
        assert local == server, frame
        seen.add("passed" if local is None else local[1].split(" (")[0][:20])
        if local is not None and local[0] == "InvalidSubmission":
            with pytest.raises(InvalidSubmission) as info:
                player.submit(competition.id, frame)
            assert info.value.status == 422  # said by the server, not by the client

    agree()
    assert "passed" in seen and len(seen) >= 5, seen  # good frames, and several kinds of fault


@pytest.mark.parametrize("need", ["probabilities", "labels", "values"])
def test_good_frames_pass_both(arena: dict[str, Any], need: str) -> None:
    """A filled template passes the check and is scored by the server."""
    competition = arena["competitions"][need]
    frame = good_frame(competition)
    assert competition.check(frame) == ROWS
    assert arena["player"].check(competition.id, frame) == ROWS
    assert arena["player"].submit(competition.id, frame).state == "scored"


def test_check_sends_no_submission(arena: dict[str, Any]) -> None:
    """Checking records nothing: no submission, no quota used."""
    player: Client = arena["player"]
    competition = arena["competitions"]["values"]
    before = len(player.submissions(competition.id))
    with pytest.raises(InvalidSubmission, match="ids missing"):
        competition.check(good_frame(competition).head(3))
    competition.check(good_frame(competition))
    assert len(player.submissions(competition.id)) == before


class CountingSession(requests.Session):
    """A real HTTP session that notes the path of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        """Note the path, then send."""
        self.paths.append(urlsplit(str(url)).path)
        return super().request(method, url, *args, **kwargs)


def test_client_check_fetches_the_competition_and_dataset_once(arena: dict[str, Any]) -> None:
    """`Client.check(id, frame)` called again and again reads the competition and its dataset
    from the server once, as `Competition.check` does."""
    counted = CountingSession()
    player = Client(arena["server"].url, token=arena["player"].token, session=counted)
    for competition in arena["competitions"].values():
        frame = good_frame(competition)
        for _ in range(3):
            assert player.check(competition.id, frame) == ROWS
            with pytest.raises(InvalidSubmission, match="ids missing"):
                player.check(competition.id, frame.head(3))
        fetched = [p for p in counted.paths if p.endswith(f"/competitions/{competition.id}")]
        datasets = [p for p in counted.paths if p.endswith(f"/{competition.id}/dataset")]
        assert (len(fetched), len(datasets)) == (1, 1), counted.paths
