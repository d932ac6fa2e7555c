"""Every scoring fault is contained: whatever a body holds, scoring either scores it or refuses
it with a 4xx; a submission whose scoring raises is failed with a reason and never stops a
start; a dead scoring worker costs at most its own job; a Parquet bomb is refused from its
footer before it is decoded."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from crowdsource import frames
from crowdsource.errors import CrowdsourceError, InvalidSubmission, TooLarge
from crowdsource.protocol.errors import STATUS
from crowdsource.server import competitions
from crowdsource.server.events import EventBus
from crowdsource.server.managers import Managers
from crowdsource.server.scoring import score as scoring
from crowdsource.server.scoring import workers as jobs
from crowdsource.server.scoring.workers import Workers
from crowdsource.server.storage.engine import database_url, make_engine
from crowdsource.server.storage.store import Store, prepare_database
from tests.api import Api, classify_data, split
from tests.support import ServerProcess, run

PARQUET = {"Content-Type": frames.PARQUET}
IDS = list(range(1000, 1010))
CLASSES = ["a", "b", "c"]

# ---------------------------------------------------------------- arbitrary JSON values

SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4)
)
VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3)
    ),
    max_leaves=5,
)
LABELS = st.sampled_from(CLASSES)
NUMBERS = st.floats(0, 1)


@st.composite
def frames_json(draw: Any, columns: dict[str, Any]) -> Any:
    """A frame in records or split form: the dataset's ids (as integers or text, maybe one
    short or one too many) with plausible `columns`, where a few cells of a few columns (the
    id column too) hold arbitrary JSON instead, and maybe a stray column."""
    ids: list[Any] = list(draw(st.permutations(IDS)))
    ids = ids[: draw(st.sampled_from([len(IDS), len(IDS) - 1, 0]))]
    ids += draw(st.lists(VALUES, max_size=1))
    as_text = draw(st.booleans())
    names = ["id", *columns, *draw(st.lists(st.sampled_from(["x", "id ", "0"]), max_size=1))]
    broken = draw(st.sets(st.sampled_from(names), max_size=2))
    rows = []
    for value in ids:
        row = {"id": str(value) if as_text and isinstance(value, int) else value}
        row.update({c: draw(columns.get(c, VALUES)) for c in names[1:]})
        for column in broken:
            if draw(st.integers(0, 3)) == 0:
                row[column] = draw(VALUES)
        rows.append(row)
    if draw(st.booleans()):
        return rows
    return {"columns": names, "data": [[r[c] for c in names] for r in rows]}


def refusal_or_result(fn: Callable[..., Any], *args: Any) -> Any:
    """Call `fn`; any exception must be a 4xx refusal (a bug is anything else)."""
    try:
        return fn(*args)
    except CrowdsourceError as exc:
        assert STATUS.get(exc.code, 400) < 500, exc
        return None


def hosting(kind: str = "classify", **more: Any) -> dict[str, Any]:
    """A valid create body."""
    dataset = pd.DataFrame({"id": IDS, "x": np.arange(len(IDS), dtype=float)})
    target = CLASSES * 4 if kind == "classify" else np.linspace(0, 1, 12)
    answer = pd.DataFrame({"id": IDS, "label": list(target)[: len(IDS)]})
    body = {"title": "t", "type": kind, "targets": ["label"], "dataset": split(dataset)}
    return {**body, "answer": split(answer), **more}


def check(body: dict[str, Any]) -> competitions.Hosting:
    """Check a create request sent as JSON."""
    return competitions.check(json.dumps(body).encode(), "application/json")


def pure_spec(kind: str, metric: str) -> tuple[scoring.Spec, scoring.Prepared]:
    """A spec and its prepared answer, without a database."""
    checked = check(hosting(kind, metric=metric))
    spec = scoring.Spec(
        competition_id=1,
        type=kind,
        metric=metric,
        id_column="id",
        targets=("label",),
        classes=tuple(checked.fields["classes"]) if checked.fields["classes"] else None,
        public_fraction=0.5,
        split_salt="0123456789abcdef",
        dataset_blob_id=1,
        answer_blob_id=2,
        rows=len(IDS),
    )
    return spec, scoring.prepare(spec, checked.dataset_parquet, checked.answer_parquet)


SPECS = {
    name: pure_spec(kind, metric)
    for name, kind, metric in [
        ("labels", "classify", "accuracy"),
        ("probabilities", "classify", "logloss"),
        ("values", "regress", "rmse"),
        ("clusters", "cluster", "adjusted_rand"),
    ]
}
COLUMNS = {
    "labels": {"label": LABELS},
    "probabilities": {c: NUMBERS for c in CLASSES},
    "values": {"label": NUMBERS},
    "clusters": {"label": LABELS},
}
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@pytest.mark.parametrize("needs", list(SPECS))
@FUZZ
@given(data=st.data())
def test_scoring_any_json_frame_scores_or_refuses(needs: str, data: st.DataObject) -> None:
    """Arbitrary JSON cells in a submission: scored, or a 4xx; never another exception,
    inline (JSON) or after a `?wait=false` round trip through stored Parquet."""
    spec, prepared = SPECS[needs]
    body = json.dumps({"predictions": data.draw(frames_json(COLUMNS[needs]))}).encode()
    refusal_or_result(scoring.score, spec, prepared, body, "application/json")
    stored = refusal_or_result(
        lambda: frames.to_parquet(frames.decode_body(body, None, key="predictions"))
    )
    if stored is not None:
        refusal_or_result(scoring.score, spec, prepared, stored, frames.PARQUET)


@pytest.mark.parametrize("kind", ["classify", "regress", "cluster", "predict"])
@FUZZ
@given(data=st.data())
def test_hosting_any_json_frames_hosts_or_refuses(kind: str, data: st.DataObject) -> None:
    """Arbitrary JSON cells in a dataset and answer: hosted (and preparable), or a 4xx."""
    body = hosting(kind)
    body["dataset"] = data.draw(frames_json({"x": NUMBERS}))
    label = LABELS if kind in ("classify", "cluster") else NUMBERS
    body["answer"] = data.draw(frames_json({"label": label}))
    checked = refusal_or_result(check, body)
    if checked is not None:
        spec, _ = SPECS["labels" if kind == "classify" else "values"]
        spec = scoring.Spec(
            **{
                **spec.__dict__,
                "type": kind,
                "classes": checked.fields["classes"] and tuple(checked.fields["classes"]),
            }
        )
        refusal_or_result(scoring.prepare, spec, checked.dataset_parquet, checked.answer_parquet)


@pytest.mark.parametrize(
    "ids",
    [[[1], [2]], [{"a": 1}, {"b": 2}], [1, "2"], [1.5, 2.5], [True, False]],
    ids=["lists", "dicts", "mixed", "floats", "booleans"],
)
def test_hosting_refuses_ids_that_are_not_plain_integers_or_strings(ids: list[Any]) -> None:
    """Dataset ids must be scalar integers or strings, said plainly."""
    body = hosting("predict")
    body["dataset"] = [{"id": i, "x": 1} for i in ids]
    body.pop("answer")
    with pytest.raises(CrowdsourceError, match=r"integers .*or all\s+strings"):
        check(body)


def test_mixed_ids_in_a_submission_are_refused() -> None:
    """Strings and numbers in one id column: a 422 that says so."""
    spec, prepared = SPECS["labels"]
    rows = [{"id": i if n % 2 else str(i), "label": "a"} for n, i in enumerate(IDS)]
    body = json.dumps({"predictions": rows}).encode()
    with pytest.raises(InvalidSubmission, match="all integers or all strings"):
        scoring.score(spec, prepared, body, "application/json")


# ---------------------------------------------------------------- containment in the jobs


def test_an_unexpected_error_becomes_a_generic_refusal_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Internals never reach the participant; the server log gets the traceback."""

    @jobs.contained
    def broken() -> None:
        raise TypeError("unhashable type: 'list' (an internal detail)")

    with caplog.at_level(logging.ERROR), pytest.raises(InvalidSubmission) as caught:
        broken()
    assert caught.value.message == jobs.UNSCORABLE
    assert "Traceback" in caplog.text and "an internal detail" in caplog.text


def test_a_refusal_keeps_its_readable_message() -> None:
    """A validation problem is passed on as it is."""

    @jobs.contained
    def refusing() -> None:
        raise InvalidSubmission("3 rows have unknown labels")

    with pytest.raises(InvalidSubmission, match="3 rows have unknown labels"):
        refusing()


# ---------------------------------------------------------------- the managers, in process


class World:
    """The managers on a real database, scoring on threads, with a host and a participant."""

    def __init__(self, db: str) -> None:
        prepare_database(db)
        self.m = Managers.build(
            store=Store(db=db),
            bus=EventBus(),
            workers=Workers(backend="thread"),
            secret=b"s" * 32,
        )
        self.db = db

    async def setup(self, **spec: Any) -> tuple[Any, Any, int]:
        """Register a host and a participant; host a competition."""
        people = self.m.participants
        host = await people.authenticate((await people.register("host"))["token"])
        me = await people.authenticate((await people.register("me"))["token"])
        body = json.dumps({**hosting(metric="accuracy"), **spec}).encode()
        comp = await self.m.competitions.host(host, body, "application/json")
        return host, me, int(comp["id"])

    def execute(self, sql: str, **params: Any) -> None:
        """Change the database behind the managers' back."""
        engine = make_engine(database_url(self.db))
        with engine.begin() as conn:
            conn.execute(text(sql), params)
        engine.dispose()


def predictions(labels: list[Any] | None = None) -> bytes:
    """A JSON submission for the classify competition of `hosting()`."""
    rows = [{"id": i, "label": lab} for i, lab in zip(IDS, labels or ["a"] * 10, strict=True)]
    return json.dumps({"predictions": rows}).encode()


@pytest.fixture
def world(database: str) -> Iterator[World]:
    w = World(database)
    yield w
    w.m.close()


def test_recovery_fails_what_raises_and_scores_the_rest(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recovery at start: a submission whose scoring raises is failed with the generic
    reason; the next one is still scored; recovery returns."""

    async def scenario() -> list[dict[str, Any]]:
        _, me, cid = await world.setup(daily_limit=5)
        subs = [
            (await world.m.submissions.submit(cid, me, predictions(), None, key=None, wait=True))[0]
            for _ in range(2)
        ]
        world.execute("UPDATE submissions SET state = 'pending'")
        rescore = jobs.rescore

        def sometimes(db_url: str, spec: Any, data: bytes) -> Any:
            if not sometimes.raised:  # type: ignore[attr-defined]
                sometimes.raised = True  # type: ignore[attr-defined]
                raise RuntimeError("a fault no one foresaw")
            return rescore(db_url, spec, data)

        sometimes.raised = False  # type: ignore[attr-defined]
        monkeypatch.setattr(jobs, "rescore", sometimes)
        await world.m.recover(rescore=True)
        return [await world.m.submissions.get(s["id"], me) for s in subs]

    first, second = run(scenario())
    assert (first["state"], first["reason"]) == ("failed", jobs.UNSCORABLE)
    assert second["state"] == "scored"
    assert first["remaining_today"] == 4  # the failed one uses no quota


@pytest.mark.parametrize("inline_bytes", [1 << 20, 10], ids=["inline", "large"])
def test_a_fault_while_scoring_a_request_is_a_422_with_the_generic_reason(
    world: World, monkeypatch: pytest.MonkeyPatch, inline_bytes: int
) -> None:
    """wait=true, small (scored on the group-commit writer thread) or large (score_and_store):
    an unexpected error is a 422 saying the server logged it; nothing is recorded."""
    world.m.workers.inline_bytes = inline_bytes

    def broken(*args: Any) -> Any:
        raise ZeroDivisionError("an internal detail")

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        _, me, cid = await world.setup()
        monkeypatch.setattr(jobs, "score", broken)
        with pytest.raises(InvalidSubmission) as caught:
            await world.m.submissions.submit(cid, me, predictions(), None, key=None, wait=True)
        return caught.value.message, await world.m.submissions.mine(me, cid)

    message, recorded = run(scenario())
    assert (message, recorded) == (jobs.UNSCORABLE, [])


def test_rescoring_when_answer_rows_arrive_fails_only_what_raises(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New answer rows re-score every submission; one that raises is failed, the call works."""

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        host, me, cid = await world.setup(type="predict", metric="rmse", answer=None)
        body = json.dumps({"predictions": [{"id": i, "label": 0.5} for i in IDS]}).encode()
        sub, _ = await world.m.submissions.submit(cid, me, body, None, key=None, wait=True)

        def broken(*args: Any) -> Any:
            raise KeyError("internal")

        monkeypatch.setattr(jobs, "rescore", broken)
        rows = json.dumps({"rows": [{"id": IDS[0], "label": 1.0}]}).encode()
        added = await world.m.submissions.resolve(cid, host, rows, None)
        return added, await world.m.submissions.get(sub["id"], me)

    added, sub = run(scenario())
    assert added["rescored"] == 1
    assert (sub["state"], sub["reason"]) == ("failed", jobs.UNSCORABLE)


def test_wait_false_background_scoring_fails_with_a_readable_reason(world: World) -> None:
    """Lists in the label column, sent with wait=false: acknowledged, then failed, with the
    validation message (not a crash that leaves it pending)."""

    async def scenario() -> dict[str, Any]:
        _, me, cid = await world.setup()
        body = predictions([["a"], ["b"]] * 5)
        view, _ = await world.m.submissions.submit(cid, me, body, None, key=None, wait=False)
        for _ in range(600):
            view = await world.m.submissions.get(view["id"], me)
            if view["state"] != "pending":
                break
            await asyncio.sleep(0.05)
        return view

    view = run(scenario())
    assert view["state"] == "failed"
    assert "not single numbers or strings" in view["reason"]


# ---------------------------------------------------------------- a real server


def wait_settled(api: Api, sub_id: int, timeout: float = 60.0) -> dict[str, Any]:
    """A submission once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        view = dict(api.get(f"/submissions/{sub_id}").json())
        if view["state"] != "pending" or time.monotonic() > deadline:
            return view
        time.sleep(0.1)


def test_unscorable_pending_submission_fails_and_the_server_still_starts(
    database: str, new_server: Callable[..., ServerProcess]
) -> None:
    """One `?wait=false` submission with lists for labels, and one whose stored predictions
    are not Parquet at all: each is failed with a reason, and a restart with them pending
    comes up (it used to crash at every start) and fails them again."""
    server = new_server(database)
    host, me = Api(server), Api(server)
    dataset, answer = classify_data(20)
    cid = host.host(
        type="classify", metric="accuracy", targets=["label"], dataset=dataset, answer=answer
    )["id"]
    rows = [{"id": int(i), "label": ["a"]} for i in dataset["id"]]
    url = f"/competitions/{cid}/submissions"
    lists = me.post(url, params={"wait": "false"}, json={"predictions": rows})
    assert lists.status_code == 202, lists.text
    assert wait_settled(me, lists.json()["id"])["state"] == "failed"
    good = [{"id": int(i), "label": "a"} for i in dataset["id"]]
    garbage = me.post(url, params={"wait": "false"}, json={"predictions": good})
    assert garbage.status_code == 202, garbage.text
    wait_settled(me, garbage.json()["id"])

    server.kill()
    engine = make_engine(database_url(database))
    with engine.begin() as conn:
        conn.execute(text("UPDATE submissions SET state = 'pending', reason = NULL"))
        conn.execute(
            text(
                "UPDATE blobs SET data = :d WHERE id = "
                "(SELECT predictions_blob_id FROM submissions WHERE id = :s)"
            ),
            {"d": b"PAR1 not parquet", "s": garbage.json()["id"]},
        )
    engine.dispose()
    server.start()

    for sub, says in [(lists, "not single numbers or strings"), (garbage, "not a readable")]:
        view = wait_settled(me, sub.json()["id"])
        assert view["state"] == "failed", view
        assert says in view["reason"]
    again = me.post(url, json={"predictions": good})
    assert again.status_code == 201, again.text


def test_two_processes_start_with_an_unscorable_pending_submission(
    tmp_path: Path, new_server: Callable[..., ServerProcess]
) -> None:
    """With --processes=2, process 0 recovers pending submissions at each start: one that
    cannot be scored is failed, and no process exits (it used to crash-loop)."""
    server = new_server(str(tmp_path / "two.db"), "--processes=2")
    host, me = Api(server), Api(server)
    cid = host.host(**hosting(metric="accuracy"))["id"]
    rows = [{"id": i, "label": {"a": 1}} for i in IDS]
    sub = me.post(f"/competitions/{cid}/submissions", params={"wait": "false"}, **as_json(rows))
    assert sub.status_code == 202, sub.text
    wait_settled(me, sub.json()["id"])
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children(recursive=True)
    server.kill()
    psutil.wait_procs(children, timeout=60)  # they end with the parent; free the port first
    engine = make_engine(database_url(server.db))
    with engine.begin() as conn:
        conn.execute(text("UPDATE submissions SET state = 'pending', reason = NULL"))
    engine.dispose()
    server.start()
    view = wait_settled(me, sub.json()["id"])
    assert view["state"] == "failed" and "not single numbers" in view["reason"], view
    assert "restarting" not in server.log.read_text()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_real_server_any_json_frame_is_a_4xx_never_a_5xx(
    small_limits: ServerProcess, data: st.DataObject
) -> None:
    """The server end to end: arbitrary frames to submit (wait or not) and to host."""
    api = world_on(small_limits)
    frame = data.draw(frames_json(COLUMNS["labels"]))
    wait = data.draw(st.sampled_from(["true", "false"]))
    r = api.post(
        f"/competitions/{api.cid}/submissions",
        params={"wait": wait},
        **as_json({"predictions": frame}),
    )
    check_shape(r)
    if r.status_code == 202:
        assert wait_settled(api, r.json()["id"])["state"] in ("failed", "scored")
    body = hosting(data.draw(st.sampled_from(["classify", "regress", "cluster", "predict"])))
    body["dataset"] = data.draw(frames_json({"x": NUMBERS}))
    body["answer"] = data.draw(frames_json({"label": LABELS | NUMBERS}))
    check_shape(api.post("/competitions", **as_json(body)))


def as_json(obj: Any) -> dict[str, Any]:
    """Request arguments sending `obj` as JSON, NaN and Infinity included (Python's JSON)."""
    return {"data": json.dumps(obj), "headers": {"Content-Type": "application/json"}}


WORLDS: dict[str, Api] = {}


def world_on(server: ServerProcess) -> Any:
    """One participant and one competition (hosted by another) on a shared server."""
    if server.url not in WORLDS:
        host, me = Api(server), Api(server)
        me.cid = host.host(**hosting())["id"]  # type: ignore[attr-defined]
        WORLDS[server.url] = me
    return WORLDS[server.url]


def check_shape(r: requests.Response) -> None:
    """Not a 5xx, and every error in the one JSON shape."""
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()) == {"error", "message", "status"}, r.text


# ---------------------------------------------------------------- dead scoring workers


def pool_workers(server: ServerProcess) -> list[psutil.Process]:
    """The scoring pool's worker processes of a server."""
    assert server.proc is not None
    children = psutil.Process(server.proc.pid).children(recursive=True)
    return [p for p in children if "spawn_main" in " ".join(_cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def big_competition(server: ServerProcess, n: int = 20_000, **spec: Any) -> tuple[Api, int, bytes]:
    """A competition whose submissions go to the pool (--inline-kb=1), and a Parquet one."""
    host, me = Api(server), Api(server)
    dataset, answer = classify_data(n)
    cid = host.host(
        type="classify",
        metric="accuracy",
        targets=["label"],
        dataset=dataset,
        answer=answer,
        **spec,
    )["id"]
    body = io.BytesIO()
    answer.assign(label="a").to_parquet(body, index=False)
    assert len(body.getvalue()) > 2048
    return me, int(cid), body.getvalue()


def wait_for_workers(server: ServerProcess, timeout: float = 60.0) -> list[psutil.Process]:
    """The pool's workers, once started."""
    deadline = time.monotonic() + timeout
    while not (found := pool_workers(server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found, "the scoring pool never started"
    return found


def test_a_killed_idle_worker_costs_nothing(new_server: Callable[..., ServerProcess]) -> None:
    """A pool worker killed between jobs: the next large submission is scored (on a fresh
    pool), and so are later ones; it used to get a 500 until restart."""
    server = new_server(None, "--scoring=process", "--inline-kb=1", "--scoring-processes=1")
    me, cid, body = big_competition(server, daily_limit=3)
    r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
    assert r.status_code == 201, r.text  # the pool is up (and warm) now
    for worker in wait_for_workers(server):
        worker.kill()
        worker.wait(30)
    for _ in range(2):
        r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
        assert r.status_code == 201, r.text


def test_a_worker_killed_mid_score_costs_only_a_retry(
    new_server: Callable[..., ServerProcess],
) -> None:
    """The worker is killed once it starts working on a large submission: the job is retried
    on a fresh pool and the submission is scored; later ones are too."""
    server = new_server(None, "--scoring=process", "--inline-kb=1", "--scoring-processes=1")
    me, cid, body = big_competition(server, n=200_000)
    me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)  # answer cached
    (worker,) = wait_for_workers(server)
    idle = sum(worker.cpu_times()[:2])
    killed = threading.Event()

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(worker.cpu_times()[:2]) <= idle:
            time.sleep(0.001)
        worker.kill()
        killed.set()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
    thread.join()
    assert killed.is_set()
    assert r.status_code == 201, r.text
    assert "starting a fresh scoring pool" in server.log.read_text()
    r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
    assert r.status_code == 201, r.text


def test_a_worker_killed_mid_score_gets_a_503_that_counts_nothing(
    new_server: Callable[..., ServerProcess],
) -> None:
    """Workers killed as soon as they appear: the job dies on its retry too, so the request
    gets a 503 with Retry-After and uses no quota; once the killing stops, it is scored."""
    server = new_server(None, "--scoring=process", "--inline-kb=1", "--scoring-processes=1")
    me, cid, body = big_competition(server, daily_limit=1)
    wait_for_workers(server)
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set():
            for worker in pool_workers(server):
                with contextlib.suppress(psutil.Error):
                    worker.kill()
            time.sleep(0.005)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
    finally:
        stop.set()
        thread.join()
    assert r.status_code == 503, r.text
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"] == "unavailable"
    assert me.get(f"/competitions/{cid}/submissions").json()["submissions"] == []
    r = me.post(f"/competitions/{cid}/submissions", data=body, headers=PARQUET)
    assert r.status_code == 201, r.text


# ---------------------------------------------------------------- Parquet bombs


def bomb(rows: int, columns: tuple[str, ...] = ("id", "label")) -> bytes:
    """A few KB of Parquet declaring `rows` rows: all-null columns are one run of levels."""
    table = pa.table({c: pa.nulls(rows, pa.int64()) for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=rows)
    return sink.getvalue()


def string_bomb(rows: int, length: int) -> bytes:
    """One long value repeated: stored once in a dictionary page, decoded `rows` times."""
    value = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype="int32")), ["x" * length])
    table = pa.table({"id": pa.array(np.arange(rows)), "label": value})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class PeakMemory:
    """The largest resident size a process reaches while the block runs (sampled)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grew_mb(self) -> float:
        """How far it rose, in MiB."""
        return (self.peak - self.start) / 2**20


def test_parquet_footer_limits_refuse_before_decoding() -> None:
    """The footer alone decides: rows, columns, declared decoded size, dictionary expansion."""
    limits = frames.Limits(rows=1000, columns=3, decoded_bytes=20_000)
    with pytest.raises(TooLarge, match="rows"):
        frames.check_footer(pq.read_metadata(io.BytesIO(bomb(2000))), limits)
    with pytest.raises(TooLarge, match="columns"):
        frames.check_footer(pq.read_metadata(io.BytesIO(bomb(10, tuple("abcd")))), limits)
    with pytest.raises(TooLarge, match="decode"):
        frames.check_footer(pq.read_metadata(io.BytesIO(bomb(900, tuple("abc")))), limits)
    old = frames.LIMITS
    frames.set_limits(limits)
    try:
        with pytest.raises(TooLarge, match="decode"):
            frames.read_table(string_bomb(500, 10_000))
        assert frames.read_table(string_bomb(50, 100)).column("label").to_pylist()[0] == "x" * 100
    finally:
        frames.set_limits(old)


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that decodes at most 64 MiB per Parquet body, with no write rate limit."""
    workdir = tmp_path_factory.mktemp("bombs")
    flags = ("--max-decoded-mb=64", "--write-rate=0")
    server = ServerProcess(str(workdir / "db.sqlite"), workdir, *flags).start()
    yield server
    server.stop()


def test_parquet_bombs_are_refused_without_a_big_allocation(small_limits: ServerProcess) -> None:
    """Submissions, datasets and answer rows: a tiny file declaring a huge row count or
    expanding to gigabytes gets a 413 or 422, and the server's memory stays put."""
    server = small_limits
    host, me = Api(server), Api(server)
    cid = host.host(**hosting("predict", answer=None, metric="rmse"))["id"]
    huge = bomb(60_000_000)
    assert len(huge) < 1 << 20
    encoded = {"format": "parquet", "data": base64.b64encode(huge).decode()}
    assert server.proc is not None
    with PeakMemory(server.proc.pid) as memory:
        sub = me.post(f"/competitions/{cid}/submissions", data=bomb(2_000_000), headers=PARQUET)
        rows = host.post(f"/competitions/{cid}/answer", data=huge, headers=PARQUET)
        dataset = host.post("/competitions", json={**hosting("predict"), "dataset": encoded})
        text_bomb = host.post(
            f"/competitions/{cid}/answer", data=string_bomb(200, 1 << 20), headers=PARQUET
        )
    assert sub.status_code == 422 and "2,000,000 rows" in sub.json()["message"], sub.text
    for r in (rows, dataset, text_bomb):
        assert r.status_code == 413, r.text
        assert r.json()["error"] == "body_too_large"
    assert memory.grew_mb < 150, f"the server grew by {memory.grew_mb:.0f} MiB"


def test_limits_are_documented() -> None:
    """Each new option is in README's option table and in SECURITY.md."""
    root = Path(__file__).resolve().parent.parent
    for option in ("--max-rows", "--max-columns", "--max-decoded-mb"):
        assert option in (root / "README.md").read_text()
        assert option in (root / "SECURITY.md").read_text()


def test_scoring_is_pure() -> None:
    """score.py takes bytes and a spec: importing it loads no database layer at all."""
    code = "import sys, crowdsource.server.scoring.score; print('sqlalchemy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("ids", [["k1", "k2", None], [1, 2, None]], ids=["strings", "integers"])
def test_answer_rows_without_an_id_are_refused(ids: list[Any]) -> None:
    """An answer row whose id is empty is named, never sorted among the others (a 500)."""
    body = hosting("regress")
    body["dataset"] = [{"id": i, "x": 1.0} for i in ids[:2]]
    body["answer"] = [{"id": i, "label": 0.5} for i in ids]
    with pytest.raises(CrowdsourceError, match=r"1 rows of the answer have no 'id'"):
        check(body)
