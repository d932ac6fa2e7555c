"""The blob store: datasets, answers and predictions kept as Parquet bytes in the `blobs` table.

Inside a caller's transaction use the functions (`read`, `insert`, `delete`, `drop_orphans`);
a scoring worker, which has no transaction of its own, uses a `BlobStore`: picklable, so it
travels to a process pool or a Dask worker, where it opens its engines on first use.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, delete, func, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from crowdsource.server.storage.engine import is_memory, make_engine
from crowdsource.server.storage.tables import BLOBS, COMPETITIONS, SUBMISSIONS

INSERT = insert(BLOBS).returning(BLOBS.c.id)


def _connection(session: Session | Connection) -> Connection:
    """The connection of a session's transaction, or the connection itself."""
    return session.connection() if isinstance(session, Session) else session


def read(session: Session | Connection, blob_id: int) -> bytes:
    """One stored frame's bytes; a LookupError if there is no such blob."""
    found = _connection(session).execute(select(BLOBS.c.data).where(BLOBS.c.id == blob_id))
    data = found.scalar_one_or_none()
    if data is None:
        raise LookupError(f"no stored frame {blob_id}")
    return bytes(data)


def insert_blob(session: Session | Connection, data: bytes) -> int:
    """Store one frame's bytes; returns the new blob's id."""
    return int(_connection(session).execute(INSERT, {"data": data}).scalar_one())


def delete_blob(session: Session | Connection, blob_id: int) -> None:
    """Delete one stored frame (predictions stored for a submission that was then refused)."""
    _connection(session).execute(delete(BLOBS).where(BLOBS.c.id == blob_id))


def drop_orphans(session: Session | Connection) -> int:
    """Delete predictions a scoring worker stored for a submission never recorded (a crash
    came between the two). Only blobs newer than every competition's dataset and answer are
    looked at, so superseded answers are kept. Returns how many were deleted."""
    newest = select(func.coalesce(func.max(COMPETITIONS.c.dataset_blob_id), 0))
    newest_answer = select(func.coalesce(func.max(COMPETITIONS.c.answer_blob_id), 0))
    found = _connection(session).execute(
        delete(BLOBS).where(
            BLOBS.c.id > newest.scalar_subquery(),
            BLOBS.c.id > newest_answer.scalar_subquery(),
            BLOBS.c.id.not_in(select(SUBMISSIONS.c.predictions_blob_id)),
        )
    )
    return int(getattr(found, "rowcount", 0) or 0)


class BlobStore:
    """Blobs of one database, each read or write its own transaction; picklable."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self._memory = is_memory(db_url)  # the server's own engine holds that database
        self._lock = threading.Lock()
        self._reader: Engine | None = None
        self._writer: Engine | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Only the URL travels; engines are opened where the store is used."""
        return {"db_url": self.db_url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["db_url"])  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlobStore) and other.db_url == self.db_url

    def __hash__(self) -> int:
        return hash(self.db_url)

    def _engines(self) -> tuple[Engine, Engine]:
        """A pool-less reader (workers are many and mostly idle) and a writer (its pragmas);
        an in-memory database's own engine, which holds it (in-process tests)."""
        if self._memory:
            engine = make_engine(self.db_url)
            return engine, engine
        with self._lock:
            if self._reader is None or self._writer is None:
                self._reader = create_engine(self.db_url, poolclass=NullPool)
                self._writer = make_engine(self.db_url)
            return self._reader, self._writer

    def get(self, blob_id: int) -> bytes:
        """One stored frame's bytes."""
        with self._engines()[0].connect() as conn:
            return read(conn, blob_id)

    def put(self, data: bytes) -> int:
        """Store one frame's bytes in its own transaction; returns the blob's id."""
        with self._engines()[1].begin() as conn:
            return insert_blob(conn, data)

    def delete(self, blob_id: int) -> None:
        """Delete one stored frame."""
        with self._engines()[1].begin() as conn:
            delete_blob(conn, blob_id)

    def sweep(self) -> int:
        """Delete predictions stored for submissions never recorded; returns how many."""
        with self._engines()[1].begin() as conn:
            return drop_orphans(conn)

    def close(self) -> None:
        """Close this store's engines (they reopen on the next use)."""
        with self._lock:
            for engine in (self._reader, self._writer):
                if engine is not None:
                    engine.dispose()
            self._reader = self._writer = None
