"""Migration billing_0004 on a ledger written before it (SQLite and PostgreSQL): old events and counters
read 0 input and output tokens, the per-model counters are filled from the events, the append-only
triggers still hold; and it goes down and up again."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command

from modelshop.billing.usage import model_month_totals, month_totals
from modelshop.db import Database, UTCDateTime
from modelshop.db.migrate import alembic_config, upgrade

T = dt.datetime(2026, 1, 31, 23, 59, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def bare(request, tmp_path):
    """A database with no tables yet."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    yield database
    database.dispose()


def _old_ledger(db: Database) -> None:
    """A plan, a customer, a key and four events as the code before billing_0004 wrote them."""
    kinds = {"spec": sa.JSON(), "created_at": UTCDateTime(), "occurred_at": UTCDateTime()}
    t = {name: sa.table(name, *(sa.column(c, kinds.get(c)) for c in cols))
         for name, cols in {
             "billing_plans": ("id", "code", "version", "currency", "interval", "spec", "spec_sha256", "created_at"),
             "billing_customers": ("id", "name", "plan_id", "status", "created_at"),
             "billing_api_keys": ("id", "kind", "customer_id", "name", "key_hash", "prefix", "status", "created_at"),
             "billing_usage_events": ("request_id", "customer_id", "key_id", "model", "route", "requests", "tokens",
                                      "characters", "compute_us", "occurred_at"),
             "billing_usage_counters": ("customer_id", "month", "requests", "tokens", "characters")}.items()}
    with db.engine.begin() as c:
        c.execute(t["billing_plans"].insert().values(id=1, code="p", version=1, currency="USD", interval="month",
                                                     spec={"code": "p"}, spec_sha256="x", created_at=T))
        c.execute(t["billing_customers"].insert().values(id=1, name="Old", plan_id=1, status="active", created_at=T))
        c.execute(t["billing_api_keys"].insert().values(id=1, kind="customer", customer_id=1, name="", key_hash="h",
                                                        prefix="ms_", status="active", created_at=T))
        events = [("a", "bert:1", 10, T), ("b", "bert:2", 20, T), ("c", "tfidf:1", 5, T),
                  ("d", "bert:1", 7, T + dt.timedelta(minutes=2))]                      # in February
        c.execute(t["billing_usage_events"].insert(), [
            {"request_id": r, "customer_id": 1, "key_id": 1, "model": m, "route": "/predict", "requests": 1,
             "tokens": n, "characters": 3 * n, "compute_us": 100, "occurred_at": at} for r, m, n, at in events])
        c.execute(t["billing_usage_counters"].insert(), [
            {"customer_id": 1, "month": "2026-01", "requests": 3, "tokens": 35, "characters": 105},
            {"customer_id": 1, "month": "2026-02", "requests": 1, "tokens": 7, "characters": 21}])


def test_billing_0004_on_an_old_ledger(bare):
    upgrade(bare.engine, "billing@billing_0003")
    _old_ledger(bare)
    upgrade(bare.engine)
    with bare.session() as s:
        assert s.execute(sa.text("select input_tokens, output_tokens from billing_usage_events")).all() == [(0, 0)] * 4
        assert month_totals(s, 1, ["2026-01"]) == {"requests": 3, "tokens": 35, "characters": 105, "input_tokens": 0,
                                                   "output_tokens": 0}
        assert model_month_totals(s, 1, ["2026-01"]) == {
            "bert": {"requests": 2, "tokens": 30, "characters": 90, "input_tokens": 0, "output_tokens": 0},
            "tfidf": {"requests": 1, "tokens": 5, "characters": 15, "input_tokens": 0, "output_tokens": 0}}
        assert model_month_totals(s, 1, ["2026-02"])["bert"]["tokens"] == 7
        rows = s.execute(sa.text("select month, model, tokens from billing_usage_model_counters "
                                 "order by month, model")).all()
        assert [tuple(r) for r in rows] == [("2026-01", "bert:1", 10), ("2026-01", "bert:2", 20),
                                            ("2026-01", "tfidf:1", 5), ("2026-02", "bert:1", 7)]
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), bare.engine.begin() as c:
        c.execute(sa.text("update billing_usage_events set output_tokens = 5"))

    cfg = alembic_config(bare.engine)
    command.downgrade(cfg, "billing_0003")
    with bare.engine.connect() as c:
        columns = {col["name"] for col in sa.inspect(c).get_columns("billing_usage_events")}
        assert "input_tokens" not in columns and "billing_usage_model_counters" not in sa.inspect(c).get_table_names()
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), bare.engine.begin() as c:
        c.execute(sa.text("delete from billing_usage_events"))          # the triggers survived the way down
    upgrade(bare.engine)
    with bare.session() as s:
        assert model_month_totals(s, 1, ["2026-01", "2026-02"])["bert"]["requests"] == 3
