"""Hosting from a multipart/form-data body (a JSON spec part, Parquet dataset and answer parts):
stored as sent, checked with the same messages as the JSON body, through a spooled body too."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from crowdsource import frames
from crowdsource.client import Client
from crowdsource.errors import BadRequest, CrowdsourceError
from crowdsource.server import competitions
from crowdsource.server.scoring import score as scoring
from crowdsource.server.storage.tables import Base, Competition, Participant
from crowdsource.times import utcnow
from tests.api import Api, split
from tests.support import ServerProcess
from tests.test_bad_input import CASES, IDS, assert_error

PARQUET = frames.PARQUET


def parquet(df: pd.DataFrame, **options: Any) -> bytes:
    """A frame as Parquet bytes, written by pandas (no index unless asked)."""
    buf = io.BytesIO()
    df.to_parquet(buf, **{"index": False, **options})
    return buf.getvalue()


def form(spec: Any, **frames_: bytes | None) -> dict[str, Any]:
    """The `files=` of a multipart create request: the spec part and Parquet parts."""
    spec_part = spec if isinstance(spec, bytes) else json.dumps(spec).encode()
    parts: dict[str, Any] = {"spec": ("spec.json", spec_part, "application/json")}
    for name, data in frames_.items():
        if data is not None:
            parts[name] = (f"{name}.parquet", data, PARQUET)
    return parts


def regress() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small regress dataset and answer over IDS."""
    rng = np.random.default_rng(1)
    dataset = pd.DataFrame({"id": IDS, "x": rng.normal(size=len(IDS))})
    return dataset, pd.DataFrame({"id": IDS, "y": rng.normal(size=len(IDS))})


def fetch(api: Api, cid: int, what: str) -> bytes:
    """A stored frame's bytes, as the server serves them."""
    r = api.get(f"/competitions/{cid}/{what}", headers={"Accept": PARQUET})
    assert r.status_code == 200, r.text
    return r.content


SPEC = {"title": "form", "type": "regress", "targets": ["y"], "public_fraction": 0.5}


# ---------------------------------------------------------------- the form, end to end


def test_form_stores_parquet_as_sent(server: ServerProcess) -> None:
    """Parquet parts are stored byte for byte (any writer, any codec) and scored as JSON ones."""
    host, bob = Api(server), Api(server)
    dataset, answer = regress()
    sent = pq.write_table  # written by pyarrow itself: no pandas metadata, zstd
    data_buf, answer_buf = io.BytesIO(), io.BytesIO()
    sent(pa.Table.from_pandas(dataset, preserve_index=False), data_buf, compression="zstd")
    sent(pa.Table.from_pandas(answer, preserve_index=False), answer_buf, compression="zstd")
    r = host.post(
        "/competitions",
        files=form(SPEC, dataset=data_buf.getvalue(), answer=answer_buf.getvalue()),
    )
    assert r.status_code == 201, r.text
    comp = r.json()
    assert (comp["rows"], comp["answer_rows"], comp["public_fraction"]) == (6, 6, 0.5)
    assert fetch(bob, comp["id"], "dataset") == data_buf.getvalue()
    assert fetch(host, comp["id"], "answer") == answer_buf.getvalue()
    twin = host.host(**{**SPEC, "public_fraction": 1.0, "dataset": dataset, "answer": answer})
    parts = {"dataset": data_buf.getvalue(), "answer": answer_buf.getvalue()}
    whole = host.post("/competitions", files=form({**SPEC, "public_fraction": 1.0}, **parts)).json()
    preds = {"predictions": split(pd.DataFrame({"id": IDS, "y": [0.5, 1, 2, -1, 0, 3.0]}))}
    scores = [
        bob.post(f"/competitions/{c['id']}/submissions", json=preds).json()["public_score"]
        for c in (whole, twin)
    ]
    assert scores[0] is not None and scores[0] == pytest.approx(scores[1], rel=1e-12)


def test_form_reencodes_what_would_not_read_back_the_same(sqlite_server: ServerProcess) -> None:
    """A Parquet with an index in it is stored as the JSON form stores it: without the index."""
    host = Api(sqlite_server)
    dataset, answer = regress()
    indexed = dataset.set_index(pd.Index([10, 11, 12, 13, 14, 15], name="row"))
    extra = answer.assign(note="x")[["y", "note", "id"]]  # more columns, another order
    r = host.post(
        "/competitions",
        files=form(SPEC, dataset=parquet(indexed, index=True), answer=parquet(extra)),
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    got = frames.read_parquet(fetch(host, cid, "dataset"))
    pd.testing.assert_frame_equal(got, dataset)
    pd.testing.assert_frame_equal(frames.read_parquet(fetch(host, cid, "answer")), answer)


def test_client_host_sends_the_form(sqlite_server: ServerProcess) -> None:
    """`Client.host` posts a multipart form of Parquet parts, not base64 inside JSON."""
    sent: list[str] = []

    class Recording(requests.Session):
        def request(self, method: str | bytes, url: str | bytes, *a: Any, **kw: Any) -> Any:
            if str(url).endswith("/competitions") and method == "POST":
                sent.append(kw["headers"]["Content-Type"])
            return super().request(method, url, *a, **kw)

    client = Client(sqlite_server.url, session=Recording(), progress=False)
    client.register(save=False)
    dataset, answer = regress()
    comp = client.host(dataset, answer, type="regress", public_fraction=0.5)
    assert len(sent) == 1 and sent[0].startswith("multipart/form-data; boundary=")
    pd.testing.assert_frame_equal(client.dataset(comp.id), dataset)
    assert (comp.rows, comp.answer_rows) == (6, 6)


# ---------------------------------------------------------------- refusals


def as_form(body: dict[str, Any]) -> dict[str, Any]:
    """A JSON create body as a form: each frame that Parquet can hold becomes a part."""
    spec, parts = dict(body), {}
    for key in ("dataset", "answer"):
        if isinstance(spec.get(key), dict) and "columns" in spec[key]:
            df = pd.DataFrame(spec[key]["data"], columns=spec[key]["columns"])
            try:
                parts[key] = parquet(df)
            except (pa.ArrowException, ValueError, OverflowError, TypeError):
                continue  # cannot be Parquet (mixed types): stays inside the spec
            del spec[key]
    return form(spec, **parts)


CREATE_CASES = [c for c in CASES if c.path == "/competitions" and c.method == "POST"]


@pytest.fixture(scope="module")
def alice(server: ServerProcess) -> Api:
    """A participant who tries to host."""
    return Api(server)


@pytest.mark.parametrize("case", CREATE_CASES, ids=lambda c: c.id)
def test_form_refuses_as_json_does(server: ServerProcess, alice: Api, case: Any) -> None:
    """Every refusal of a JSON create body is the same, word for word, sent as a form."""
    body = case.body
    sent = {} if case.who is None else dict(alice.session.headers)
    url = f"{server.url}/api/v1/competitions"
    json_headers = {**sent, "Content-Type": "application/json"}
    as_json = requests.post(url, data=json.dumps(body).encode(), headers=json_headers, timeout=30)
    files = form(body) if not isinstance(body, dict) else as_form(body)
    got = requests.post(url, files=files, headers=sent, timeout=30)
    expected = assert_error(as_json, case.status, case.code, case.says)
    assert assert_error(got, case.status, case.code, case.says) == expected


def good_parts() -> dict[str, bytes]:
    """A valid regress competition's frames as Parquet."""
    dataset, answer = regress()
    return {"dataset": parquet(dataset), "answer": parquet(answer)}


def raw_form(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    """A multipart body written by hand, to break it on purpose."""
    out = b""
    for name, data in parts:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


GOOD = [("spec", json.dumps(SPEC).encode()), *good_parts().items()]
FORM_CASES: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("no-spec-part", lambda: raw_form(GOOD[1:]), "'spec' part", "multipart/form-data"),
    ("unknown-part", lambda: raw_form([*GOOD, ("data", b"x")]), "got spec, dataset, answer, data",
     "multipart/form-data"),
    ("part-twice", lambda: raw_form([*GOOD, GOOD[1]]), "'dataset' comes twice",
     "multipart/form-data"),
    ("frame-in-spec-and-part", lambda: raw_form([
        ("spec", json.dumps({**SPEC, "dataset": split(regress()[0])}).encode()), *GOOD[1:]]),
     "'dataset' is sent twice", "multipart/form-data"),
    ("dataset-not-parquet", lambda: raw_form([*GOOD[:1], ("dataset", b"id,x\n1,2\n"),
     GOOD[2]]), "the 'dataset' part: the body is not a readable Parquet file",
     "multipart/form-data"),
    ("spec-not-json", lambda: raw_form([("spec", b"{title"), *GOOD[1:]]), "not valid JSON",
     "multipart/form-data"),
    ("no-closing-boundary", lambda: raw_form(GOOD)[:-12], "part needs a name and an end",
     "multipart/form-data"),
    ("no-boundary", lambda: raw_form(GOOD), "needs a boundary", "multipart/form-data"),
    ("empty-form", lambda: b"", "body is empty", "multipart/form-data"),
    ("repeated-column", lambda: raw_form([*GOOD[:1], ("dataset", pq_repeated()), GOOD[2]]),
     "dataset: column names must be unique", "multipart/form-data"),
]  # fmt: skip


def pq_repeated() -> bytes:
    """A Parquet file whose columns repeat a name (Arrow allows it; a frame must not)."""
    table = pa.table([pa.array(IDS), pa.array(IDS), pa.array([1.0] * 6)], names=["id", "id", "x"])
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.parametrize("name,body,says,ctype", FORM_CASES, ids=[c[0] for c in FORM_CASES])
def test_malformed_form_is_refused(
    sqlite_server: ServerProcess, name: str, body: Callable[[], bytes], says: str, ctype: str
) -> None:
    """A broken form gets a 400 that names the fix; nothing is hosted."""
    host = Api(sqlite_server)
    boundary = "" if name == "no-boundary" else "; boundary=b0undary"
    r = host.post("/competitions", data=body(), headers={"Content-Type": ctype + boundary})
    assert_error(r, 400, "bad_request", says)
    mine = [
        c for c in host.get("/competitions").json()["competitions"] if c["host"]["id"] == host.id
    ]
    assert mine == []


# ---------------------------------------------------------------- large and spooled bodies


def test_spooled_form_hosts(new_server: Callable[..., ServerProcess]) -> None:
    """A form past --inline-kb, spooled to a file as it arrives, hosts and stores as sent."""
    server = new_server(None, "--inline-kb=4")
    host = Api(server)
    n = 20_000
    dataset = pd.DataFrame({"id": np.arange(n), "x": np.linspace(0, 1, n)})
    answer = pd.DataFrame({"id": np.arange(n), "y": np.linspace(1, 2, n)})
    parts = {"dataset": parquet(dataset), "answer": parquet(answer)}
    r = host.post("/competitions", files=form(SPEC, **parts))
    assert r.status_code == 201, r.text
    assert fetch(host, r.json()["id"], "dataset") == parts["dataset"]
    bad = host.post("/competitions", files=form({**SPEC, "targets": ["z"]}, **parts))
    assert_error(bad, 422, "invalid_competition", "lacks column(s) z")


def test_million_row_dataset_hosts(sqlite_server: ServerProcess) -> None:
    """A 1,000,000-row competition hosts through the client (a spooled form) and is served."""
    client = Client(sqlite_server.url, progress=False, timeout=300)
    client.register(save=False)
    n = 1_000_000
    ids = np.arange(n, dtype=np.int64) * 3 + 1
    dataset = pd.DataFrame({"id": ids, "x": np.random.default_rng(0).random(n)})
    answer = pd.DataFrame({"id": ids, "y": np.random.default_rng(1).random(n)})
    comp = client.host(dataset, answer, type="regress", public_fraction=0.5)
    assert (comp.rows, comp.answer_rows) == (n, n)
    assert len(client.dataset(comp.id)) == n


# ---------------------------------------------------------------- in process


@st.composite
def competition_frames(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, str, float]:
    """A dataset and answer of any id kind and label kind, and a type and public fraction."""
    n = draw(st.integers(2, 40))
    id_kind = draw(st.sampled_from(["int", "str"]))  # the only kinds of id a dataset may hold
    base = draw(st.lists(st.integers(-(2**40), 2**40), min_size=n, max_size=n, unique=True))
    ids: Any = {"int": base, "str": [f"k{v}" for v in base]}
    kind = draw(st.sampled_from(["classify", "regress", "cluster"]))
    labels: Any
    if kind == "regress":
        labels = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    else:
        pool = draw(st.sampled_from([["a", "b", "c"], [0, 1], [1.5, 2.5, 7.0]]))
        labels = [pool[i % len(pool)] for i in range(n)]
    dataset = pd.DataFrame({"id": ids[id_kind], "x": np.arange(n, dtype=float)})
    answer = pd.DataFrame({"id": ids[id_kind], "label": labels}).sample(frac=1, random_state=n)
    return dataset, answer.reset_index(drop=True), kind, draw(st.sampled_from([1.0, 0.5, 0.2]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(competition_frames())
def test_answer_prepared_before_storing_is_what_scoring_loads(
    drawn: tuple[pd.DataFrame, pd.DataFrame, str, float],
) -> None:
    """The answer prepared while checking (from the parts as sent, or from JSON) equals what a
    scoring process prepares later from the stored bytes."""
    dataset, answer, kind, fraction = drawn
    spec = {"title": "t", "type": kind, "targets": ["label"], "public_fraction": fraction}
    metric = {"classify": "accuracy", "regress": "rmse", "cluster": "adjusted_rand"}[kind]
    spec["metric"] = metric
    body, ctype = _encoded(spec, dataset, answer)
    for hosting in (
        competitions.check(body, ctype),
        competitions.check(json.dumps({**spec, "dataset": split(dataset),
                                       "answer": split(answer)}).encode()),
    ):  # fmt: skip
        draft = competitions.spec(Competition(**hosting.fields, dataset_blob_id=0))
        loaded = scoring.prepare(draft, hosting.dataset_parquet, hosting.answer_parquet)
        np.testing.assert_array_equal(hosting.prepared[0], loaded[0])
        assert loaded[1] is not None and hosting.prepared[1] is not None
        for field in ("ids", "y", "public"):
            np.testing.assert_array_equal(
                getattr(hosting.prepared[1], field), getattr(loaded[1], field)
            )
    assert competitions.check(body, ctype).dataset_parquet == parquet(dataset)


def _encoded(
    spec: dict[str, Any], dataset: pd.DataFrame, answer: pd.DataFrame
) -> tuple[bytes, str]:
    """A multipart create body, as the client encodes it."""
    from urllib3 import encode_multipart_formdata

    return encode_multipart_formdata(form(spec, dataset=parquet(dataset), answer=parquet(answer)))


def test_storing_prepares_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The write transaction only inserts: the answer was prepared while checking."""
    dataset, answer = regress()
    body, ctype = _encoded(SPEC, dataset, answer)
    hosting = competitions.check(body, ctype)

    def refuse(*args: Any) -> None:
        raise AssertionError("prepared inside the transaction")

    monkeypatch.setattr(competitions, "prepare", refuse)
    monkeypatch.setattr(competitions, "prepare_truth", refuse, raising=False)
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        host = Participant(name="h", token_hash="x", created_at=utcnow())
        session.add(host)
        session.flush()
        comp = competitions.create(session, host=host, hosting=hosting, now=utcnow())
        assert (comp.answer_rows, comp.answer_version, comp.rows) == (6, 1, 6)


def test_form_reader_cuts_parts_from_bytes_and_files(tmp_path: Any) -> None:
    """The same parts from a body in memory and from a spooled file; a broken one is refused."""
    from urllib3 import encode_multipart_formdata

    payload = {"spec": b'{"a": 1}', "dataset": b"PAR1\r\n--\r\n\x00" * 50, "answer": b""}
    body, ctype = encode_multipart_formdata({k: ("f", v) for k, v in payload.items()})
    spooled = tmp_path / "body"
    spooled.write_bytes(body)
    assert frames.read_form(body, ctype) == payload
    assert frames.read_form(frames.Spooled(str(spooled), len(body)), ctype) == payload
    with pytest.raises(BadRequest, match=r"closing boundary|name and an end"):
        frames.read_form(body[: len(body) // 2], ctype)


KEYS = ["index_columns", "columns", "column_indexes", "kind", "name", "field_name",
        "pandas_type", "numpy_type", "metadata", "start", "stop", "step", "timezone"]  # fmt: skip
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["id", "x", "range", "int64"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=12,
)


def with_metadata(meta: bytes) -> bytes:
    """A valid dataset's Parquet whose pandas metadata is `meta`."""
    table = pa.table({"id": IDS, "x": [1.0] * 6}).replace_schema_metadata({b"pandas": meta})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@settings(max_examples=150, deadline=None)
@given(st.one_of(JSON.map(lambda v: json.dumps(v).encode()), st.binary(max_size=20)))
def test_any_pandas_metadata_is_read_or_refused(meta: bytes) -> None:
    """Whatever pandas metadata a Parquet frame carries, as a part or as base64 in JSON, the
    competition is checked or refused with a message: nothing else escapes."""
    data = with_metadata(meta)
    spec = {"title": "t", "type": "predict", "targets": ["y"]}
    b64 = {"format": "parquet", "data": base64.b64encode(data).decode()}
    for body, ctype in (
        _encoded_parts(spec, dataset=data),
        (json.dumps({**spec, "dataset": b64}).encode(), "application/json"),
    ):
        with contextlib.suppress(CrowdsourceError):
            competitions.check(body, ctype)


def _encoded_parts(spec: dict[str, Any], **parts: bytes) -> tuple[bytes, str]:
    """A multipart create body of the spec and Parquet parts."""
    from urllib3 import encode_multipart_formdata

    return encode_multipart_formdata(form(spec, **parts))


def test_unreadable_pandas_metadata_is_a_400(sqlite_server: ServerProcess) -> None:
    """On a real server, both forms answer 400 for a frame whose pandas metadata breaks."""
    host = Api(sqlite_server)
    data = with_metadata(b'{"index_columns": ["nope"], "columns": []}')
    spec = {"title": "t", "type": "predict", "targets": ["y"]}
    r = host.post("/competitions", files=form(spec, dataset=data))
    assert_error(r, 400, "bad_request", "the 'dataset' part: its pandas metadata is unreadable")
    b64 = {"format": "parquet", "data": base64.b64encode(data).decode()}
    r = host.post("/competitions", json={**spec, "dataset": b64})
    assert_error(r, 400, "bad_request", "dataset: 'data' must be base64-encoded Parquet")
