"""Database engines: SQLite (WAL) by default or PostgreSQL by URL, migrated by Alembic."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy import exc as db
from sqlalchemy.engine import make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool

from crowdsource.extras import require

MIGRATIONS = Path(__file__).with_name("migrations")
# The advisory lock servers take around migrating (a key of its own: see storage/locks.py).
MIGRATION_LOCK = 0x63730000
_MEMORY: dict[str, Engine] = {}  # an in-memory database is one engine per URL in a process
# libpq options: a connect gives up after a few seconds (the request answers 503), and
# keepalives notice a server that vanished without closing its connections.
PG_CONNECT = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}


def database_url(db: str) -> str:
    """Turn `--db` (a file path, `:memory:` or a SQLAlchemy URL) into a URL."""
    if "://" in db:
        return db
    if db == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def is_memory(url: str) -> bool:
    """Whether a URL names an in-memory SQLite database (tests of the managers use one)."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def forget(engine: Engine) -> None:
    """Dispose of an engine; an in-memory database goes with it."""
    for url, known in list(_MEMORY.items()):
        if known is engine:
            del _MEMORY[url]
    engine.dispose()


def _sqlite_pragmas(synchronous: str) -> Any:
    """A connect hook setting WAL, sync level, foreign keys and a busy timeout."""

    def hook(dbapi_conn: Any, _record: Any) -> None:
        """Configure one new SQLite connection."""
        _configure(dbapi_conn, synchronous)

    return hook


def _configure(dbapi_conn: Any, synchronous: str) -> None:
    """Set the pragmas on one SQLite connection."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA synchronous={synchronous}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    """Take the write lock up front, so read-check-write transactions never race."""
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _create_private(path: str | None) -> None:
    """Create a SQLite file readable by its owner only, before SQLite creates it with mode
    644 (SQLite gives the -wal and -shm files the database file's mode)."""
    if path in (None, "", ":memory:"):
        return
    with contextlib.suppress(OSError):  # there already, or not possible: SQLite says why
        os.close(os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(
    db: str, *, synchronous: str = "NORMAL", pool_size: int = 8, max_overflow: int = 8
) -> Engine:
    """Create the engine for `db`, keeping `pool_size` connections and opening up to
    `max_overflow` more at busy times. On SQLite, `synchronous` NORMAL (WAL) keeps every
    commit through a process crash; FULL also through a power cut, at an fsync per commit."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL; got {synchronous!r}")
    url = make_url(database_url(db))
    if url.get_backend_name() == "sqlite":
        if is_memory(str(url)):  # one connection, shared: each would see a database of its own
            if str(url) in _MEMORY:
                return _MEMORY[str(url)]
            engine = create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            _MEMORY[str(url)] = engine
        else:
            _create_private(url.database)
            engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow)
        event.listen(engine, "connect", _sqlite_pragmas(synchronous))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Dead connections (a restart, a terminated backend) are replaced at checkout by the ping.
    postgres = url.get_backend_name() == "postgresql"
    if postgres and url.get_driver_name() == "psycopg":
        require("psycopg", extra="postgres", needed_for="a PostgreSQL database")
    connect = {k: v for k, v in PG_CONNECT.items() if postgres and k not in url.query}
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=True,
        connect_args=connect,
    )


def unavailable(exc: BaseException | None) -> bool:
    """Whether `exc` says the database cannot be reached now (lost connections, a restart, a
    full pool, a lock wait given up), so that the same request may succeed in a moment."""
    if isinstance(exc, db.OperationalError | db.InterfaceError | db.TimeoutError):
        return True
    return isinstance(exc, db.DBAPIError) and exc.connection_invalidated


def _alembic() -> Config:
    """Alembic's configuration: our migrations, run on a connection we hand over."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this version of crowdsource knows."""
    head = ScriptDirectory.from_config(_alembic()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's schema revision (None: never migrated). Read directly, not through
    Alembic, which logs each time (readiness probes ask every few seconds)."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.scalar(text("SELECT version_num FROM alembic_version"))


def migrating(conn: Connection) -> None:
    """Hold the migration lock until `conn`'s transaction ends, so that servers starting
    together migrate one at a time: the first upgrades, the others then find nothing to do.
    On SQLite the transaction's BEGIN IMMEDIATE is that lock already."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": MIGRATION_LOCK})


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision, under the migration lock.
    Returns the revisions before and after."""
    cfg = _alembic()
    with engine.begin() as conn:
        migrating(conn)
        before = current_revision(conn)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def session_factory(engine: Engine) -> sessionmaker[Any]:
    """Sessions that keep loaded objects usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
