"""billing.queries: the read-only questions the console and the storefront ask, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

from modelshop.billing import accounts, keys, queries, usage
from modelshop.billing.plans import parse_plan
from modelshop.db import utcnow
from tests.support import ACTOR


def customer_with_key(db, name: str) -> tuple[int, int]:
    cid = accounts.create_customer(db, name, "pro", actor=ACTOR)["id"]
    return cid, keys.create_key(db, cid, actor=ACTOR)["id"]


def test_account_counts(db):
    accounts.create_plan(db, parse_plan({"code": "pro", "currency": "USD", "base_fee": "10.00"}), actor=ACTOR)
    assert queries.account_counts(db) == {"customers": 0, "keys": 0}
    _, ann_key = customer_with_key(db, "Ann")
    customer_with_key(db, "Bob")
    accounts.create_customer(db, "Cy", "pro", actor=ACTOR)
    keys.create_admin_key(db, name="ops", actor=ACTOR)
    keys.revoke_key(db, ann_key, actor=ACTOR)
    # three customers; Bob's key and the admin key are active, Ann's revoked key is not counted
    assert queries.account_counts(db) == {"customers": 3, "keys": 2}


def test_model_latency(db):
    accounts.create_plan(db, parse_plan({"code": "pro", "currency": "USD", "base_fee": "10.00"}), actor=ACTOR)
    cid, kid = customer_with_key(db, "Ann")
    now = utcnow()
    since = now - dt.timedelta(days=30)

    def call(i: int, model: str, compute_us: int, at: dt.datetime, requests: int = 1) -> usage.Metered:
        return usage.Metered(customer_id=cid, key_id=kid, request_id=f"r{i}", route="/predict", model=model,
                             requests=requests, tokens=3, characters=10, compute_us=compute_us, occurred_at=at)

    assert queries.model_latency(db, "a_b", since=since) == {"calls": 0, "mean_ms": None}
    assert all(usage.write_batch(db, [
        call(1, "a_b:1", 3_000, now),                              # counted
        call(2, "a_b:2", 9_000, now, requests=2),                  # another version: counted, 2 requests
        call(3, "axb:1", 500_000, now),                            # "_" is literal, not a wildcard
        call(4, "a_b-large:1", 500_000, now),                      # another model whose name starts alike
        call(5, "a_b:1", 500_000, since - dt.timedelta(hours=1)),  # before the window
    ]))
    # (3 000 + 9 000) µs over 3 requests = 4 ms each
    assert queries.model_latency(db, "a_b", since=since) == {"calls": 3, "mean_ms": 4.0}
    assert queries.model_latency(db, "axb", since=since) == {"calls": 1, "mean_ms": 500.0}
