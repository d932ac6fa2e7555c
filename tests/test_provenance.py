"""Provenance: each submission records the function that made it (name, code digest, source
if shared) and the participant's environment; its owner reads it always, the host once the
competition closes (real servers, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

import crowdsource.client as CC
from crowdsource.client.competitor import fingerprint
from crowdsource.client.provenance import function_source
from crowdsource.server.storage.engine import migrate
from tests.api import Api, split
from tests.support import ServerProcess, database_at, private_server

THRESHOLD = 0.0


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep credentials in a temporary folder; ignore the caller's environment."""
    monkeypatch.setenv("CROWDSOURCE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("CROWDSOURCE_TOKEN", raising=False)


def registered(server: ServerProcess) -> CC.Client:
    """A client acting as a fresh participant."""
    client = CC.Client(server.url, progress=False)
    client.register(f"p-{uuid.uuid4().hex[:12]}", save=False)
    return client


def post(host: CC.Client, **options: Any) -> CC.Competition:
    """A small accuracy-scored classify competition."""
    ids = np.arange(1, 21)
    dataset = pd.DataFrame({"id": ids, "x": np.linspace(-1, 1, 20)})
    answer = pd.DataFrame({"id": ids, "label": (dataset["x"] > 0).astype(int)})
    return host.host(dataset, answer, type="classify", metric="accuracy", **options)


def above(x: pd.Series) -> pd.Series:
    """1 where x is above the threshold."""
    return (x > THRESHOLD).astype(int)


def guess(competition: CC.Competition) -> pd.DataFrame:
    """A function that competes: a threshold on x."""
    data = competition.dataset
    return pd.DataFrame({"id": data["id"], "label": above(data["x"])})


def test_a_submission_records_its_function(server: ServerProcess) -> None:
    """Its name, its code digest (the idempotency key's), the source when shared, and the
    versions of the client, Python and the main packages."""
    host, player = registered(server), registered(server)
    comp = post(host)
    sub = player.submit(comp.id, guess(comp), function=guess, share_source=True)
    found = player.provenance(sub.id)
    record = found["provenance"]
    assert found["participant"]["id"] == player.participant["id"]
    assert record["function"]["name"] == "guess"
    assert record["function"]["digest"] == fingerprint(guess)
    assert "def guess(competition" in record["function"]["source"]
    assert "import pandas as pd" in record["function"]["source"]
    assert "import above" in record["function"]["source"]  # a helper it calls, importable
    assert record["packages"]["numpy"] == np.__version__
    assert record["python"].split()[-1].count(".") == 2

    quiet = player.submit(comp.id, guess(comp), function=guess)
    assert player.provenance(quiet.id)["provenance"]["function"]["source"] is None
    bare = player.submit(comp.id, guess(comp))
    assert player.provenance(bare.id)["provenance"] is None


def test_only_the_owner_and_after_close_the_host_read_it(server: ServerProcess) -> None:
    """Anyone else gets a 403 saying who may read it, and when."""
    host, player, other = registered(server), registered(server), registered(server)
    comp = post(host, closes_at=timedelta(hours=1))
    sub = player.submit(comp.id, guess(comp), function=guess)
    with pytest.raises(CC.Forbidden, match=r"to the host once competition \d+ closes at"):
        host.provenance(sub.id)
    with pytest.raises(CC.Forbidden, match="shown to its owner"):
        other.provenance(sub.id)
    host.close_competition(comp.id)
    assert host.provenance(sub.id)["provenance"]["function"]["name"] == "guess"
    with pytest.raises(CC.NotFound):
        player.provenance(2**31 - 1)


def quiet(competition: CC.Competition) -> pd.DataFrame:
    """Another function, competing without sharing its source."""
    return competition.template().assign(label=1)


def test_a_competing_function_shares_its_source_when_asked(server: ServerProcess) -> None:
    """`Competitor(share_source=True)` shares every function's source; `add(...,
    share_source=False)` keeps one's back."""
    host, player = registered(server), registered(server)
    competitor = CC.Competitor(player, share_source=True).add("classify", guess)
    with competitor.add("classify", quiet, share_source=False):
        comp = post(host)
        assert competitor.wait(2, 30, competition_id=comp.id)
    found = {r.function: r for r in competitor.results if r.competition_id == comp.id}
    assert all(r.ok for r in found.values()), found
    record = player.provenance(found["guess"].submission_id)["provenance"]
    assert record["function"]["digest"] == fingerprint(guess)
    assert record["function"]["source"] == function_source(guess)
    record = player.provenance(found["quiet"].submission_id)["provenance"]
    assert (record["function"]["name"], record["function"]["source"]) == ("quiet", None)


BAD: list[tuple[Any, str]] = [
    ("text", "provenance must be an object"),
    ({"function": None}, "provenance.function must be an object"),
    ({"function": {"name": "", "digest": "ab" * 6}}, "function.name must be text of 1 to"),
    ({"function": {"name": "f", "digest": "XYZ"}}, "function.digest must be the code's sha256"),
    ({"function": {"name": "f", "digest": "ab" * 6, "source": 3}}, "source must be text"),
    ({"function": {"name": "f", "digest": "ab" * 6}, "os": "x"}, "unknown keys os"),
    ({"function": {"name": "f", "digest": "ab" * 6}, "packages": {"a": 1}}, "'a' must map to"),
    (
        {"function": {"name": "f", "digest": "ab" * 6, "source": "#" * 300_000}},
        "at most 256 KiB",
    ),
]


@pytest.mark.parametrize(("provenance", "message"), BAD)
def test_bad_provenance_is_refused_before_scoring(
    sqlite_server: ServerProcess, provenance: Any, message: str
) -> None:
    """A 400 that names the field to fix; nothing is recorded, no quota is used."""
    host, player = Api(sqlite_server), Api(sqlite_server)
    ids = np.arange(1, 11)
    comp = host.host(
        type="regress",
        targets=["y"],
        dataset=pd.DataFrame({"id": ids, "x": ids * 1.0}),
        answer=pd.DataFrame({"id": ids, "y": ids * 2.0}),
        daily_limit=1,
    )
    frame = pd.DataFrame({"id": ids, "y": ids * 2.0})
    body = {"predictions": split(frame), "provenance": provenance}
    r = player.post(f"/competitions/{comp['id']}/submissions", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["message"]
    good = {"function": {"name": "f", "digest": "ab" * 6}, "python": "3.11"}
    r = player.post(
        f"/competitions/{comp['id']}/submissions",
        json={"predictions": split(frame), "provenance": good},
    )
    assert r.status_code == 201, r.text
    stored = player.get(f"/submissions/{r.json()['id']}/provenance").json()["provenance"]
    assert stored == {
        "function": {"name": "f", "digest": "ab" * 6, "source": None},
        "client_version": None,
        "python": "3.11",
        "packages": {},
    }


def test_a_0005_database_upgrades_with_no_provenance(database: str) -> None:
    """Migration 0006 adds the columns; submissions made before have none."""
    engine = database_at(database, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO submissions (id, competition_id, participant_id, state,"
                " predictions_blob_id, created_at) VALUES (1, 1, 1, 'scored', 1, :t)"
            ),
            {"t": "2026-01-01 00:00:00"},
        )
    migrate(engine)
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT function_name, function_digest, provenance FROM submissions")
        ).one()
    engine.dispose()
    assert tuple(row) == (None, None, None)


def test_provenance_travels_in_the_parquet_footer() -> None:
    """The Python client's body is one Parquet file: the record rides in its metadata."""
    from crowdsource.client.client import _encoded
    from crowdsource.server.provenance import extract

    record = {"function": {"name": "g", "digest": "0123456789ab", "source": None}}
    body = _encoded(pd.DataFrame({"id": [1]}), {b"crowdsource.provenance": json.dumps(record)})
    found = extract(body, "application/vnd.apache.parquet")
    assert found is not None and found["function"] == record["function"]


def test_large_and_deferred_bodies_carry_it_too(tmp_path: Any) -> None:
    """Bodies over --inline-kb (spooled to a file, scored by a worker) and `?wait=false`
    submissions record their provenance as well."""
    with private_server("sqlite", tmp_path, "--inline-kb=1") as server:
        host, player = registered(server), registered(server)
        comp = post(host)
        frame = guess(comp)  # over 1 KiB as Parquet, with its provenance in the footer
        sub = player.submit(comp.id, frame, function=guess, share_source=True)
        assert player.provenance(sub.id)["provenance"]["function"]["name"] == "guess"
        later = player.submit(comp.id, frame, function=guess, wait=False)
        assert later.state == "pending"
        assert player.provenance(later.id)["provenance"]["function"]["source"] is None
        api = Api(server)
        body = {
            "predictions": split(frame),
            "provenance": {"function": {"name": "f", "digest": "ab" * 6}},
            "padding": "x" * 4096,
        }
        r = api.post(f"/competitions/{comp.id}/submissions", json=body)
        assert r.status_code == 201, r.text
        assert api.get(f"/submissions/{r.json()['id']}/provenance").json()["provenance"]
