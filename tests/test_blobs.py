"""The blob store: frames' bytes in and out, on SQLite and PostgreSQL, from any process."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import pytest
from sqlalchemy import insert

from crowdsource.server.storage import blobs
from crowdsource.server.storage.blobs import BlobStore
from crowdsource.server.storage.engine import database_url
from crowdsource.server.storage.store import prepare_database
from crowdsource.server.storage.tables import COMPETITIONS, Participant
from crowdsource.times import utcnow

PARTICIPANTS = Participant.__table__


@pytest.fixture
def store(database: str) -> Iterator[BlobStore]:
    prepare_database(database)
    store = BlobStore(database_url(database))
    yield store
    store.close()


def test_put_get_delete(store: BlobStore) -> None:
    """Bytes come back as they went in; a deleted blob is gone."""
    first, second = store.put(b"PAR1 one"), store.put(b"\x00" * 100_000)
    assert (store.get(first), store.get(second)) == (b"PAR1 one", b"\x00" * 100_000)
    store.delete(first)
    with pytest.raises(LookupError):
        store.get(first)
    assert store.get(second) == b"\x00" * 100_000


def _stored_elsewhere(store: BlobStore) -> int:
    """Store from another process (as a scoring worker does)."""
    return store.put(b"from a worker")


def test_a_store_travels_to_a_spawned_process(store: BlobStore) -> None:
    """Only the URL is pickled; the worker opens its own engines."""
    assert pickle.loads(pickle.dumps(store)) == store
    store.get(store.put(b"open the engines first"))
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        blob_id = pool.submit(_stored_elsewhere, store).result(timeout=120)
    assert store.get(blob_id) == b"from a worker"


def test_sweep_drops_only_predictions_never_recorded(store: BlobStore) -> None:
    """Blobs newer than every dataset and answer and not a submission's are orphans."""
    dataset, answer = store.put(b"dataset"), store.put(b"answer")
    engine = store._engines()[1]
    with engine.begin() as conn:
        host = conn.execute(
            insert(PARTICIPANTS).returning(PARTICIPANTS.c.id),
            {"name": "host", "token_hash": "h", "created_at": utcnow()},
        ).scalar_one()
        conn.execute(insert(COMPETITIONS), _competition(host, dataset, answer))
    orphan = store.put(b"orphan")
    assert store.sweep() == 1
    assert (store.get(dataset), store.get(answer)) == (b"dataset", b"answer")
    with pytest.raises(LookupError):
        store.get(orphan)
    with engine.begin() as conn:
        assert blobs.read(conn, dataset) == b"dataset"


def _competition(host: int, dataset: int, answer: int) -> dict[str, object]:
    """A competition row over the two blobs."""
    return {
        "host_id": host,
        "title": "t",
        "description": "",
        "type": "classify",
        "metric": "accuracy",
        "id_column": "id",
        "targets": ["label"],
        "classes": ["a", "b"],
        "public_fraction": 1.0,
        "split_salt": "s",
        "dataset_blob_id": dataset,
        "answer_blob_id": answer,
        "rows": 1,
        "answer_rows": 1,
        "opens_at": utcnow(),
        "created_at": utcnow(),
    }
