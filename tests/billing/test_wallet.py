"""The wallet: an append-only ledger of top-ups and draws; a prepaid customer's calls stop at an empty
wallet and a top-up reopens them; two invoices of one customer finalised at once draw it once."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
import sqlalchemy as sa

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer
from modelshop.billing.invoices import finalize, run_invoices
from modelshop.billing.keys import create_key
from modelshop.billing.tables import WalletEntry
from modelshop.billing.wallet import topup, wallet
from modelshop.errors import Conflict, PaymentRequired, ValidationError
from tests.billing.races import race
from tests.support import ACTOR, make_plans, serve_call

PERIODS = ("2026-01", "2026-02")   # grad: a 10.00 base fee each month, nothing used


def test_two_invoices_finalised_at_once_draw_the_wallet_once(db, plan_files):
    make_plans(db, plan_files, "grad")
    customer = create_customer(db, "Twice", "grad", actor=ACTOR)
    with db.session() as s:   # a customer since before January: both base fees are due
        s.execute(sa.text("update billing_customers set created_at = :t where id = :i"),
                  {"t": dt.datetime(2025, 12, 1, tzinfo=dt.UTC), "i": customer["id"]})
    topup(db, customer["id"], "15.00", actor=ACTOR)
    drafts = [run_invoices(db, p, actor=ACTOR)["invoices"][0]["id"] for p in PERIODS]
    now = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

    # both read the balance (15.00), then one commits while the other still holds what it read
    first, second = race(db.engine, "sum(billing_wallet_entries.amount_minor)",
                         *(lambda i=i: finalize(db, i, actor=ACTOR, now=now) for i in drafts))
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    # 15.00 spent once: 10.00 by one, the 5.00 left by the other (not 10.00 each)
    assert sorted([first["credits_applied"], second["credits_applied"]]) == ["10.00", "5.00"]
    assert sorted([first["total"], second["total"]]) == ["0.00", "5.00"]
    assert sorted([first["number"], second["number"]]) == ["INV-000001", "INV-000002"]
    w = wallet(db, customer["id"])
    assert w["balance"] == "0.00"
    assert sorted(e["amount"] for e in w["entries"] if e["kind"] == "draw") == ["-10.00", "-5.00"]


def test_prepaid_wallet_exhausted_gives_402_and_topup_reopens(sqlite_db, plan_files, settings):
    make_plans(sqlite_db, plan_files, "prepaid")
    customer = create_customer(sqlite_db, "Pre", "prepaid", actor=ACTOR)
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
    topup(sqlite_db, customer["id"], "1.00", actor=ACTOR)         # 0.40 a request: 2 calls fit (1.20 > 1.00)
    gate = BillingGate(settings, sqlite_db)

    async def go(n):
        return [(await serve_call(gate, key))[0] for _ in range(n)]

    assert asyncio.run(go(4)) == ["ok", "ok", 402, 402]           # never below zero
    topup(sqlite_db, customer["id"], "0.40", actor=ACTOR)           # 0.60 left: one more
    assert asyncio.run(go(2)) == ["ok", 402]
    with pytest.raises(PaymentRequired):
        raise asyncio.run(serve_call(gate, key))[1]
    with pytest.raises(ValidationError, match="more than zero"):
        topup(sqlite_db, customer["id"], "0", actor=ACTOR)


def test_wallet_is_an_append_only_ledger(sqlite_db, plan_files):
    make_plans(sqlite_db, plan_files, "grad")
    c = create_customer(sqlite_db, "W", "grad", actor=ACTOR)
    topup(sqlite_db, c["id"], "5.25", actor=ACTOR)
    topup(sqlite_db, c["id"], 3, actor=ACTOR)
    assert wallet(sqlite_db, c["id"])["balance"] == "8.25"
    with sqlite_db.session() as s:
        assert [e.amount_minor for e in s.scalars(sa.select(WalletEntry))] == [525, 300]
    with pytest.raises(Conflict, match="append-only"), sqlite_db.session() as s:
        s.scalars(sa.select(WalletEntry)).first().amount_minor = 10_000
