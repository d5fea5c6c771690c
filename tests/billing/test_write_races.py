"""Read-then-write flows under concurrency: the second of two never acts on the first one's stale read.

SQLite takes the writer lock before the first read (BEGIN IMMEDIATE, `Database.write_session`);
PostgreSQL locks the rows read (and an advisory lock per number sequence).
"""

from __future__ import annotations

import datetime as dt
import threading

import sqlalchemy as sa

from modelshop.billing.accounts import create_customer
from modelshop.billing.invoices import finalize, run_invoices
from modelshop.billing.keys import create_key, list_keys, rotate_key
from modelshop.billing.tables import Customer
from modelshop.errors import Conflict, ValidationError
from tests.billing.conftest import ADMIN, make_plans
from tests.billing.races import race


def test_two_rotations_of_one_key_make_one_replacement(db, plan_files):
    make_plans(db, plan_files, "grad")
    customer = create_customer(db, "Rot", "grad", actor=ADMIN)
    key = create_key(db, customer["id"], actor=ADMIN)
    # both read the key as active; one rotates and commits; the other goes on from its read
    results = race(db.engine, "FROM billing_api_keys WHERE billing_api_keys.id =",
                   lambda: rotate_key(db, key["id"], actor=ADMIN), lambda: rotate_key(db, key["id"], actor=ADMIN))
    made = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(made) == 1 and len(refused) == 1, results
    assert isinstance(refused[0], ValidationError) and f"key {key['id']} is revoked" in refused[0].message
    keys = list_keys(db, customer["id"])
    assert [(k["id"], k["status"]) for k in keys] == [(key["id"], "revoked"), (made[0]["id"], "active")]


def test_two_signups_with_one_email_make_one_customer(db, plan_files):
    make_plans(db, plan_files, "grad")
    # both find no customer with the e-mail; one creates it and commits; the other goes on to insert
    results = race(db.engine, "FROM billing_customers WHERE billing_customers.email =",
                   lambda: create_customer(db, "Ann", "grad", email="ann@example.com", actor=ADMIN),
                   lambda: create_customer(db, "Ann again", "grad", email="ann@example.com", actor=ADMIN))
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], Conflict)
    assert refused[0].message == "a customer with e-mail ann@example.com already exists"
    with db.session() as s:
        assert s.scalars(sa.select(Customer.email)).all() == ["ann@example.com"]


def test_concurrent_finalisations_take_gapless_distinct_numbers(db, plan_files):
    n = 6
    make_plans(db, plan_files, "grad")
    drafts = []
    for i in range(n):
        c = create_customer(db, f"C{i}", "grad", actor=ADMIN)
        with db.session() as s:
            s.execute(sa.text("update billing_customers set created_at = :t where id = :i"),
                      {"t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "i": c["id"]})
        drafts.append(run_invoices(db, "2026-02", customer_id=c["id"], actor=ADMIN)["invoices"][0]["id"])
    start = threading.Barrier(n)
    out: list = [None] * n

    def go(i: int) -> None:
        start.wait()
        try:
            out[i] = finalize(db, drafts[i], actor=ADMIN, now=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))["number"]
        except Exception as e:  # noqa: BLE001 - asserted below
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(out) == [f"INV-{k:06d}" for k in range(1, n + 1)], out
