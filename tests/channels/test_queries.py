"""channels.queries: the console's reads that join channel and billing tables, on SQLite and PostgreSQL.

The world: plan pro; channel "news". Ann signed up through news (two keys, one revoked), Bob was
bound directly (no referral), Cy is bound to nothing yet.
"""

from __future__ import annotations

import datetime as dt

import pytest

from modelshop.billing import accounts, keys
from modelshop.channels import attribution, channels, queries
from modelshop.errors import NotFound
from tests.support import ACTOR, make_plan


@pytest.fixture
def world(db, settings) -> dict:
    make_plan(db, "pro", base_fee="10.00")
    news = channels.create_channel(db, "News", "campaign", code="news", actor=ACTOR)
    made = {name: accounts.create_customer(db, name, "pro", email=f"{name.lower()}@x.io", actor=ACTOR)["id"]
            for name in ("Ann", "Bob", "Cy")}
    at = dt.datetime(2025, 3, 4, 5, 6, tzinfo=dt.UTC)
    attribution.bind_customer(db, settings, made["Ann"], params={"ref": "news"}, now=at)
    attribution.bind_customer(db, settings, made["Bob"], now=at)
    keys.create_key(db, made["Ann"], actor=ACTOR)
    keys.revoke_key(db, keys.create_key(db, made["Ann"], actor=ACTOR)["id"], actor=ACTOR)
    keys.create_key(db, made["Bob"], actor=ACTOR)
    return {"news": news, "at": at, **made}


def test_overview_counts(db, world):
    # 3 customers; Ann's live key and Bob's (the revoked one is not counted); news and direct (made for Bob)
    assert queries.overview_counts(db) == {"customers": 3, "keys": 2, "channels": 2}


def test_customers_with_channel(db, world, settings):
    rows = queries.customers_with_channel(db, limit=10)
    assert [(r["name"], r["plan"], r["channel"], r["bound_by"], r["keys"]) for r in rows] == [
        ("Cy", "pro", None, None, 0),
        ("Bob", "pro", "direct", "direct", 1),
        ("Ann", "pro", "news", settings.attribution_model, 1)]
    ann = rows[2]
    assert (ann["id"], ann["email"], ann["status"]) == (world["Ann"], "ann@x.io", "active")
    assert isinstance(ann["created_at"], dt.datetime)  # the page formats it
    assert [r["name"] for r in queries.customers_with_channel(db, limit=2)] == ["Cy", "Bob"]  # the newest


def test_get_channel(db, world):
    news = world["news"]
    assert queries.get_channel(db, "NEWS") == news
    assert queries.get_channel(db, news["id"]) == news
    with pytest.raises(NotFound, match='channel "nwes" does not exist.*news'):
        queries.get_channel(db, "nwes")


def test_bound_customers(db, world, settings):
    rows = queries.bound_customers(db, world["news"]["id"], limit=10)
    assert len(rows) == 1
    row = rows[0]
    assert {k: row[k] for k in ("id", "name", "email", "bound_by")} == {
        "id": world["Ann"], "name": "Ann", "email": "ann@x.io", "bound_by": settings.attribution_model}
    assert row["bound_at"] == world["at"]
    direct = queries.get_channel(db, "direct")
    assert [r["name"] for r in queries.bound_customers(db, direct["id"], limit=10)] == ["Bob"]
    assert queries.bound_customers(db, direct["id"], limit=0) == []
