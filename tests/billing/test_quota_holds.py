"""Quotas and prepaid wallets under concurrency: calls admitted but not yet committed count against them.

Before the holds, `admit` compared the quota (and the wallet) with the ledger alone, so every call in
flight at the limit saw the same "used" and got in: 30 concurrent calls against a quota of 5 were all
admitted, and 20 concurrent calls on a wallet good for 3 were all admitted.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from modelshop.billing import BillingGate
from modelshop.billing import gate as gate_module
from modelshop.billing.accounts import create_customer
from modelshop.billing.keys import create_key
from modelshop.billing.limits import LocalLimiter, RedisLimiter
from modelshop.billing.wallet import topup
from modelshop.errors import QuotaExceeded
from modelshop.gate import Units
from tests.billing.conftest import ADMIN, make_plans, serve_call
from tests.billing.servers import redis_url_or_skip


def test_concurrent_calls_never_pass_the_quota(db, plan_files, settings):
    make_plans(db, plan_files, "free")                                 # quota: 5 requests, block
    customer = create_customer(db, "Q", "free", actor=ADMIN)
    key = create_key(db, customer["id"], actor=ADMIN)["key"]
    gate = BillingGate(settings, db)

    async def go():
        return await asyncio.gather(*(serve_call(gate, key) for _ in range(30)))

    outcomes = [kind for kind, _ in asyncio.run(go())]
    assert outcomes.count("ok") == 5
    assert outcomes.count(402) == 25


def test_concurrent_calls_never_overdraw_a_prepaid_wallet(db, plan_files, settings):
    make_plans(db, plan_files, "prepaid")                              # 0.40 a request, prepaid
    customer = create_customer(db, "P", "prepaid", actor=ADMIN)
    key = create_key(db, customer["id"], actor=ADMIN)["key"]
    topup(db, customer["id"], "1.00", actor=ADMIN)                     # one by one: 3 calls get in
    gate = BillingGate(settings, db)

    async def go():
        return await asyncio.gather(*(serve_call(gate, key) for _ in range(20)))

    outcomes = [kind for kind, _ in asyncio.run(go())]
    assert outcomes.count("ok") == 3                                   # as many as one by one, not 20
    assert outcomes.count(402) == 17


def test_a_hold_is_given_back_on_commit_or_when_it_expires(sqlite_db, plan_files, settings, monkeypatch):
    make_plans(sqlite_db, plan_files, "free")
    customer = create_customer(sqlite_db, "Q", "free", actor=ADMIN)
    key = create_key(sqlite_db, customer["id"], actor=ADMIN)["key"]
    now = [1000.0]
    gate = BillingGate(settings, sqlite_db)
    gate.limiter = LocalLimiter(clock=lambda: now[0])

    async def go():
        p = await gate.authenticate(key)
        for _ in range(5):                              # admitted, then failed: never recorded
            async def admitted_then_failed():
                await gate.admit(p, "m:1", Units())
            await asyncio.create_task(admitted_then_failed())
        with pytest.raises(QuotaExceeded, match=r"\(0 used, 5 more in calls under way\)"):
            await gate.admit(p, "m:1", Units())
        now[0] += gate_module.QUOTA_HOLD_S + 1                     # the failed calls' holds expire
        assert [(await serve_call(gate, key))[0] for _ in range(6)] == ["ok"] * 5 + [402]
        assert gate.limiter._held == {}                            # committed calls gave theirs back

    asyncio.run(go())


def test_redis_holds_are_shared_and_expire(settings):
    url = redis_url_or_skip(pytest)
    prefix = f"test-{uuid.uuid4().hex[:12]}"

    async def go():
        a, b = RedisLimiter(url, prefix), RedisLimiter(url, prefix)     # two replicas
        try:
            assert await a.reserve("quota:1:2026-11:requests", "x", 2, 30) == 2
            assert await b.reserve("quota:1:2026-11:requests", "y", 3, 30) == 5
            await a.release("quota:1:2026-11:requests", "x", 2)
            assert await b.reserve("quota:1:2026-11:requests", "z", 1, 0.05) == 4
            await asyncio.sleep(0.2)                                      # z expired; y is still held
            assert await a.reserve("quota:1:2026-11:requests", "w", 1, 30) == 4
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())
