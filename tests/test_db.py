"""The database layer: migrations reach head on SQLite and PostgreSQL and match the tables."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelshop.db import Base, Database, all_tables


def _check_schema(db: Database) -> None:
    db.migrate()
    db.migrate()  # a second run is a no-op
    all_tables()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diff == [], f"migrations and tables disagree: {diff}"


def test_sqlite_migrations_match_tables(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    _check_schema(db)
    with db.engine.connect() as c:
        assert c.execute(sa.text("pragma journal_mode")).scalar() == "wal"


def test_postgres_migrations_match_tables(pg_url):
    _check_schema(Database(pg_url))


def test_naive_datetimes_are_refused(tmp_path):
    from modelshop.registry.tables import ModelVersion

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.migrate()
    row = ModelVersion(name="m", version=1, stage="staging", family="tfidf", format="sklearn", base_model="tfidf",
                       path="m/v1", multi_label=False, labels=["a"], metrics={},
                       created_at=dt.datetime(2026, 1, 1))
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), db.session() as s:
        s.add(row)


def test_sqlite_commits_are_durable_and_write_sessions_take_turns(tmp_path):
    """synchronous=FULL (a returned commit survives power loss); BEGIN IMMEDIATE serialises read-then-write."""
    import threading
    import time

    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as c:
        assert c.execute(sa.text("pragma synchronous")).scalar() == 2      # 2 = FULL
    with db.engine.begin() as c:
        c.execute(sa.text("create table counter (n integer)"))
        c.execute(sa.text("insert into counter values (0)"))

    def bump() -> None:
        with db.write_session() as s:
            n = s.execute(sa.text("select n from counter")).scalar()
            time.sleep(0.05)                     # the other thread would read the same n here
            s.execute(sa.text("update counter set n = :n"), {"n": n + 1})

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(RuntimeError), db.write_session() as s:   # an error rolls the write back
        s.execute(sa.text("update counter set n = 100"))
        raise RuntimeError
    with db.engine.connect() as c:
        assert c.execute(sa.text("select n from counter")).scalar() == 4
