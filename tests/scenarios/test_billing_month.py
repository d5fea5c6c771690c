"""End to end: three plans, three customers, 1 000 calls through BillingGate, invoices to the cent."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer, create_reseller
from modelshop.billing.invoices import finalize, run_invoices
from modelshop.billing.keys import create_key, revoke_key
from modelshop.billing.periods import parse_period, period_of
from modelshop.billing.tables import IdempotencyRecord, UsageEvent
from modelshop.billing.usage import usage_summary
from modelshop.billing.wallet import topup, wallet
from modelshop.db import utcnow
from modelshop.gate import Units
from tests.support import ACTOR, gather_in_chunks, make_plans, serve_call


def test_thousand_calls_bill_to_the_cent(db, plan_files, settings):
    make_plans(db, plan_files, "grad", "vol", "pack")
    reseller = create_reseller(db, "northwind", "15", actor=ACTOR)
    a = create_customer(db, "Alpha", "grad", actor=ACTOR)
    b = create_customer(db, "Beta", "vol", email="ops@beta.example", actor=ACTOR)
    c = create_customer(db, "Gamma", "pack", reseller_id=reseller["id"], actor=ACTOR)
    key_a = create_key(db, a["id"], actor=ACTOR)["key"]
    key_b = create_key(db, b["id"], models=["minilm"], rpm=100_000, tpm=10_000_000, actor=ACTOR)["key"]
    key_c = create_key(db, c["id"], actor=ACTOR)["key"]
    expiring_b = create_key(db, b["id"], expires=utcnow() + dt.timedelta(minutes=1), actor=ACTOR)["key"]
    revoked_c = create_key(db, c["id"], actor=ACTOR)
    revoke_key(db, revoked_c["id"], actor=ACTOR)
    topup(db, c["id"], "10.00", actor=ACTOR)

    now = utcnow() + dt.timedelta(minutes=5)   # the gate's clock: the expiring key has expired by then
    period = period_of(now, "month")
    gate = BillingGate(settings, db, clock=lambda: now)

    fresh = ([(key_a, Units(1, 10, 40)) for _ in range(400)]
             + [(key_b, Units(1, 7 + i % 5, 30)) for i in range(300)]
             + [(key_c, Units(1, 20, 100 + 3 * i)) for i in range(180)])
    idem = [f"req-{i}" if i % 3 != 2 else None for i in range(len(fresh))]
    retry_idx = ([i for i in range(0, 400) if idem[i]][:40] + [i for i in range(400, 700) if idem[i]][:30]
                 + [i for i in range(700, 880) if idem[i]][:30])

    async def scenario():
        first = await gather_in_chunks([serve_call(gate, k, "minilm:1", u, idem[i]) for i, (k, u) in enumerate(fresh)])
        retries = await gather_in_chunks([serve_call(gate, fresh[i][0], "minilm:1", fresh[i][1], idem[i])
                                          for i in retry_idx])
        bad = await gather_in_chunks([serve_call(gate, expiring_b, "minilm:1", Units(1, 5, 5)) for _ in range(10)]
                                     + [serve_call(gate, revoked_c["key"], "minilm:1", Units(1, 5, 5))
                                        for _ in range(10)])
        await gate.close()
        return first, retries, bad

    first, retries, bad = asyncio.run(scenario())
    assert len(first) + len(retries) + len(bad) == 1000
    assert [r[0] for r in first] == ["ok"] * 880
    assert [r[0] for r in retries] == ["replayed"] * 100
    for i, (_, stored) in zip(retry_idx, retries, strict=True):   # the very first reply, byte for byte
        assert stored.body == first[i][1].body and stored.headers == first[i][1].headers
    assert [r[0] for r in bad] == [401] * 20
    assert sum("expired" in r[1].message for r in bad) == 10
    assert sum("revoked" in r[1].message for r in bad) == 10
    assert gate.committer.items == 880 and gate.committer.batches < 880 / 5, "records were not group-committed"

    with db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 880
        assert s.scalar(select(func.count(IdempotencyRecord.id))) == sum(1 for k in idem if k)
    assert usage_summary(db, customer_id=a["id"], period=period)["totals"] == \
        {"requests": 400, "tokens": 4000, "characters": 16000, "input_tokens": 0, "output_tokens": 0}
    assert usage_summary(db, customer_id=b["id"], period=period)["totals"]["tokens"] == 2700
    assert usage_summary(db, customer_id=c["id"], period=period)["totals"]["characters"] == 66330

    run = run_invoices(db, period, actor=ACTOR)
    inv = {i["customer_id"]: i for i in run["invoices"]}
    assert run["created"] == 3
    # Alpha: base 10.00; 400 requests - 50 free = 350: 100 × 0.05003 + 250 × 0.020012 = 10.006 → 10.01 (once)
    assert [ln["amount"] for ln in inv[a["id"]]["lines"]] == ["10.00", "10.01"]
    assert Decimal(inv[a["id"]]["total"]) == Decimal("20.01")
    # Beta: 2 700 tokens, all at the volume tier they fall in: 2 700 × 0.00087 = 2.349 → 2.35
    assert Decimal(inv[b["id"]]["total"]) == Decimal("2.35")
    # Gamma: 66 330 chars - 5 000 free = 61 330 → 62 packages × 0.75 = 46.50; 15 % off 6.975 → 6.98;
    # 10.00 prepaid credits drawn first → 29.52 due
    g = inv[c["id"]]
    assert (g["subtotal"], g["discount"], g["credits_applied"], g["total"]) == ("46.50", "6.98", "10.00", "29.52")
    assert all(i["currency"] == "USD" and i["status"] == "draft" for i in inv.values())

    again = run_invoices(db, period, actor=ACTOR)               # re-running a period: same drafts, recomputed
    assert again["created"] == 0 and again["updated"] == 3
    assert [i["total"] for i in again["invoices"]] == [i["total"] for i in run["invoices"]]

    _, end, _ = parse_period(period)
    numbers = [finalize(db, inv[cid]["id"], actor=ACTOR, now=end)["number"] for cid in (a["id"], b["id"], c["id"])]
    assert numbers == ["INV-000001", "INV-000002", "INV-000003"]
    assert Decimal(wallet(db, c["id"])["balance"]) == 0
    final = run_invoices(db, period, actor=ACTOR)
    assert final["unchanged"] == 3 and final["created"] == final["updated"] == 0
    assert {i["customer_id"]: i["total"] for i in final["invoices"]} == \
        {a["id"]: "20.01", b["id"]: "2.35", c["id"]: "29.52"}
