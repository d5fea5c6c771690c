"""The database layer: one SQLAlchemy 2 engine per process, SQLite by default, PostgreSQL by URL.

Owns the declarative `Base`, sessions and migrations (Alembic, an ordered list of revisions in
`migrations/versions`). Each part of the platform declares its own tables in its own
`tables.py` on this `Base`; this package imports nothing of theirs except in `all_tables()`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from modelshop.settings import Settings, get_settings


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    pass


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # The file holds the billing ledger: FULL syncs the WAL at every commit, so a transaction that
    # returned survives a power loss (NORMAL may lose the last ones; the group commit of usage keeps
    # the number of fsyncs low).
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine, a session factory, and the migrations applied once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        from modelshop.db.migrate import upgrade

        upgrade(self.engine)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        with self.sessions() as s, s.begin():
            yield s

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session for a flow that reads and then writes on what it read (a status, a balance, a max).

        On SQLite it opens with BEGIN IMMEDIATE: the writer lock is taken before the first read, so
        two such flows take turns (waiting up to the busy timeout) instead of both acting on the
        same stale read; pysqlite would otherwise run the reads outside any transaction and begin
        only at the first write. On PostgreSQL it is a plain transaction and the caller locks the
        rows it reads with `with_for_update()`.
        """
        with self.sessions() as s, s.begin():
            if self.engine.dialect.name == "sqlite":
                # pysqlite emits no BEGIN of its own for a statement that is not DML, and sees this
                # one as the open transaction that SQLAlchemy's commit or rollback then ends.
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            yield s

    def dispose(self) -> None:
        self.engine.dispose()


_lock = threading.Lock()
_databases: dict[str, Database] = {}


def get_database(settings: Settings | None = None) -> Database:
    """The process-wide `Database` for these settings, migrated on first use."""
    url = (settings or get_settings()).sqlalchemy_url
    with _lock:
        db = _databases.get(url)
        if db is None:
            db = Database(url)
            db.migrate()
            _databases[url] = db
        return db


def all_tables() -> None:
    """Import every part's table module so `Base.metadata` is complete (for migration checks)."""
    import importlib
    import pkgutil

    import modelshop

    for mod in pkgutil.iter_modules(modelshop.__path__):
        if mod.ispkg:
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(f"modelshop.{mod.name}.tables")
