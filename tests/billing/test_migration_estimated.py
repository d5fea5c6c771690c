"""Migration billing_0005 on a ledger written before it (SQLite and PostgreSQL): old events read as
measured (not estimated), new ones keep the flag, the append-only triggers still hold, and it goes down
and up again."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from alembic import command

from modelshop.billing.usage import Metered, usage_summary, write_batch
from modelshop.db import Database, UTCDateTime
from modelshop.db.migrate import alembic_config, upgrade

T = dt.datetime(2026, 1, 15, 12, tzinfo=dt.UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def bare(request, tmp_path):
    """A database with no tables yet."""
    url = f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    yield database
    database.dispose()


def _old_event(db: Database) -> None:
    """A plan, a customer, a key and one generative event as the code before billing_0005 wrote them."""
    kinds = {"spec": sa.JSON(), "created_at": UTCDateTime(), "occurred_at": UTCDateTime()}
    t = {name: sa.table(name, *(sa.column(c, kinds.get(c)) for c in cols))
         for name, cols in {
             "billing_plans": ("id", "code", "version", "currency", "interval", "spec", "spec_sha256", "created_at"),
             "billing_customers": ("id", "name", "plan_id", "status", "created_at"),
             "billing_api_keys": ("id", "kind", "customer_id", "name", "key_hash", "prefix", "status", "created_at"),
             "billing_usage_events": ("request_id", "customer_id", "key_id", "model", "route", "requests", "tokens",
                                      "characters", "input_tokens", "output_tokens", "compute_us",
                                      "occurred_at")}.items()}
    with db.engine.begin() as c:
        c.execute(t["billing_plans"].insert().values(id=1, code="p", version=1, currency="USD", interval="month",
                                                     spec={"code": "p"}, spec_sha256="x", created_at=T))
        c.execute(t["billing_customers"].insert().values(id=1, name="Old", plan_id=1, status="active", created_at=T))
        c.execute(t["billing_api_keys"].insert().values(id=1, kind="customer", customer_id=1, name="", key_hash="h",
                                                        prefix="ms_", status="active", created_at=T))
        c.execute(t["billing_usage_events"].insert().values(
            request_id="old", customer_id=1, key_id=1, model="gpt:1", route="/v1/chat/completions", requests=1,
            tokens=30, characters=0, input_tokens=20, output_tokens=10, compute_us=5, occurred_at=T))


def test_billing_0005_on_an_old_ledger(bare):
    upgrade(bare.engine, "billing@billing_0004")
    _old_event(bare)
    upgrade(bare.engine)
    with bare.engine.connect() as c:
        (column,) = [col for col in sa.inspect(c).get_columns("billing_usage_events") if col["name"] == "estimated"]
        assert column["nullable"] is False
    new = Metered(customer_id=1, key_id=1, request_id="new", route="/v1/chat/completions", model="gpt:1", requests=1,
                  tokens=7, characters=0, compute_us=5, occurred_at=T, input_tokens=4, output_tokens=3, estimated=True)
    assert write_batch(bare, [new]) == [True]
    with bare.session() as s:
        rows = s.execute(sa.text("select request_id, estimated from billing_usage_events order by id")).all()
    assert [(r, bool(e)) for r, e in rows] == [("old", False), ("new", True)]
    summary = usage_summary(bare, customer_id=1, period="2026-01")
    assert summary["totals"]["input_tokens"] == 24 and summary["estimated"]["input_tokens"] == 4
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), bare.engine.begin() as c:
        c.execute(sa.text("update billing_usage_events set estimated = true"))   # no event is re-labelled

    command.downgrade(alembic_config(bare.engine), "billing_0004")
    with bare.engine.connect() as c:
        assert "estimated" not in {col["name"] for col in sa.inspect(c).get_columns("billing_usage_events")}
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), bare.engine.begin() as c:
        c.execute(sa.text("delete from billing_usage_events"))          # the triggers survived the way down
    upgrade(bare.engine)
    with bare.session() as s:
        assert s.execute(sa.text("select count(*) from billing_usage_events where estimated")).scalar() == 0
