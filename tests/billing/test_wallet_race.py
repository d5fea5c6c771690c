"""The prepaid wallet is drawn once: two invoices of one customer finalised at once share its balance."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from modelshop.billing.accounts import create_customer
from modelshop.billing.invoices import finalize, run_invoices
from modelshop.billing.wallet import topup, wallet
from tests.billing.conftest import ADMIN, make_plans
from tests.billing.races import race

PERIODS = ("2026-01", "2026-02")   # grad: a 10.00 base fee each month, nothing used


def test_two_invoices_finalised_at_once_draw_the_wallet_once(db, plan_files):
    make_plans(db, plan_files, "grad")
    customer = create_customer(db, "Twice", "grad", actor=ADMIN)
    with db.session() as s:   # a customer since before January: both base fees are due
        s.execute(sa.text("update billing_customers set created_at = :t where id = :i"),
                  {"t": dt.datetime(2025, 12, 1, tzinfo=dt.UTC), "i": customer["id"]})
    topup(db, customer["id"], "15.00", actor=ADMIN)
    drafts = [run_invoices(db, p, actor=ADMIN)["invoices"][0]["id"] for p in PERIODS]
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    # both read the balance (15.00), then one commits while the other still holds what it read
    first, second = race(db.engine, "sum(billing_wallet_entries.amount_minor)",
                         *(lambda i=i: finalize(db, i, actor=ADMIN, now=now) for i in drafts))
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    # 15.00 spent once: 10.00 by one, the 5.00 left by the other (not 10.00 each)
    assert sorted([first["credits_applied"], second["credits_applied"]]) == ["10.00", "5.00"]
    assert sorted([first["total"], second["total"]]) == ["0.00", "5.00"]
    assert sorted([first["number"], second["number"]]) == ["INV-000001", "INV-000002"]
    w = wallet(db, customer["id"])
    assert w["balance"] == "0.00"
    assert sorted(e["amount"] for e in w["entries"] if e["kind"] == "draw") == ["-10.00", "-5.00"]
