"""BillingGate on its own: scopes, rate limits, idempotency races, quota and wallet holds, the key cache.
The limiters under it: test_limits.py; the group commit of what it records: test_committer.py."""

from __future__ import annotations

import asyncio
import math

import pytest
from sqlalchemy import func, select

from modelshop.billing import BillingGate
from modelshop.billing import billing_gate as gate_module
from modelshop.billing.accounts import create_customer, set_status
from modelshop.billing.keys import create_key
from modelshop.billing.limits import LocalLimiter
from modelshop.billing.tables import ApiKey, IdempotencyClaim, UsageEvent
from modelshop.billing.wallet import topup
from modelshop.errors import Forbidden, ModelError, PayloadTooLarge, QuotaExceeded, RateLimited, Unauthorized
from modelshop.gate import Units
from modelshop.serve.app import error_headers
from tests.support import ACTOR, make_plans, serve_call


@pytest.fixture
def customer(sqlite_db, plan_files):
    make_plans(sqlite_db, plan_files, "grad")
    return create_customer(sqlite_db, "Cy", "grad", actor=ACTOR)


@pytest.fixture
def customer_on(db, plan_files):
    """A customer in the parametrised database (SQLite and PostgreSQL)."""
    make_plans(db, plan_files, "grad")
    return create_customer(db, "Cy", "grad", actor=ACTOR)


def test_scope_rpm_and_tpm(sqlite_db, customer, settings):
    key = create_key(sqlite_db, customer["id"], models=["minilm", "bert:3"], rpm=5, tpm=100, actor=ACTOR)["key"]
    gate = BillingGate(settings, sqlite_db)

    async def go():
        p = await gate.authenticate(key)
        assert (p.kind, p.customer_id, p.models, p.rpm, p.tpm) == \
            ("customer", customer["id"], ("bert:3", "minilm"), 5, 100)
        await gate.admit(p, "minilm:7", Units(1, 10))           # any version of a scoped name
        await gate.admit(p, "bert:3", Units(1, 10))
        with pytest.raises(Forbidden, match='may not call model "bert:4"; it may call: bert:3, minilm'):
            await gate.admit(p, "bert:4", Units())
        with pytest.raises(PayloadTooLarge, match="more than the key's limit of 100 tokens per minute"):
            await gate.admit(p, "minilm", Units(1, 101))
        with pytest.raises(RateLimited, match="rate limit of 100 tokens per minute") as e:
            await gate.admit(p, "minilm", Units(1, 90))          # 80 tokens left: short of tokens, not requests
        assert e.value.extra["remaining"] == 3
        for _ in range(3):
            await gate.admit(p, "minilm", Units(1, 1))
        with pytest.raises(RateLimited, match="rate limit of 5 requests per minute reached") as e:
            await gate.admit(p, "minilm", Units(1, 1))
        # a bucket of 5 a minute refills one request every 12 s
        assert 11 < e.value.retry_after <= 12 and e.value.extra["limit"] == 5 and e.value.extra["remaining"] == 0
        assert 0 < e.value.extra["reset"] <= 60
        assert error_headers(e.value) == {"RateLimit-Limit": "5", "RateLimit-Remaining": "0",
                                          "RateLimit-Reset": str(math.ceil(e.value.extra["reset"])),
                                          "Retry-After": "12"}
        await gate.close()

    asyncio.run(go())


def test_suspended_customers_and_bad_tokens(sqlite_db, customer, settings):
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings, sqlite_db)
    for token, message in ((None, "missing API key"), ("", "missing API key"), ("nope", "invalid API key")):
        with pytest.raises(Unauthorized, match=message):
            asyncio.run(gate.authenticate(token))
    set_status(sqlite_db, customer["id"], "suspended", actor=ACTOR)
    with pytest.raises(Forbidden, match="suspended"):
        asyncio.run(gate.authenticate(key))


def test_one_idempotency_key_buys_one_answer(sqlite_db, customer, settings):
    """Stripe's rule: a key names one request. Duplicates that arrive while the first runs get 409 (none
    of them runs the model), later ones get the first reply, and another request under the key is 422."""
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings.model_copy(update={"billing_group_commit_ms": 20.0}), sqlite_db)
    ran = []

    async def go():
        release = asyncio.Event()

        async def infer():
            ran.append(1)
            await release.wait()

        first = asyncio.ensure_future(serve_call(gate, key, idempotency_key="same", infer=infer))
        while not ran:
            await asyncio.sleep(0.005)
        # 9 copies, and 9 requests with other bodies, while the first is still under way
        copies = await asyncio.gather(*[serve_call(gate, key, idempotency_key="same", infer=infer)
                                        for _ in range(9)])
        others = await asyncio.gather(*[serve_call(gate, key, idempotency_key="same", body=f"body-{i}",
                                                   infer=infer) for i in range(1, 10)])
        release.set()
        done = await first
        later = await serve_call(gate, key, idempotency_key="same", infer=infer)
        changed = await serve_call(gate, key, idempotency_key="same", body="body-1", infer=infer)
        await gate.close()
        return done, copies, others, later, changed

    done, copies, others, later, changed = asyncio.run(go())
    assert done[0] == "ok" and len(ran) == 1                    # the model ran once, for the first call
    assert [c[0] for c in copies] == [409] * 9
    assert "still in progress" in copies[0][1].message and error_headers(copies[0][1])["Retry-After"] == "1"
    assert [o[0] for o in others] == [422] * 9 and "another request" in others[0][1].message
    assert later[0] == "replayed" and later[1].body == done[1].body
    assert changed[0] == 422
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 1
        assert s.scalar(select(func.count(IdempotencyClaim.id))) == 0   # the stored reply ended the claim
        assert s.scalar(select(ApiKey.last_used_at)) is not None


def test_an_idempotency_key_belongs_to_its_customer(db, customer_on, settings):
    """Another tenant sending the same Idempotency-Key (with another body) is another request of its
    own: it neither collides with the first customer's claim nor receives its stored reply."""
    first = create_key(db, customer_on["id"], actor=ACTOR)["key"]
    other = create_key(db, create_customer(db, "Eve", "grad", actor=ACTOR)["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings, db)

    async def go():
        mine = await serve_call(gate, first, idempotency_key="shared", body="mine")
        theirs = await serve_call(gate, other, idempotency_key="shared", body="theirs")
        again = await serve_call(gate, other, idempotency_key="shared", body="theirs")
        await gate.close()
        return mine, theirs, again

    mine, theirs, again = asyncio.run(go())
    assert mine[0] == "ok" and theirs[0] == "ok" and theirs[1].body != mine[1].body
    assert again[0] == "replayed" and again[1].body == theirs[1].body
    with db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 2


def test_a_failed_call_releases_its_key_so_the_client_can_retry(db, customer_on, settings):
    key = create_key(db, customer_on["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings, db)

    async def boom():
        raise ModelError("the model failed")

    async def go():
        failed = await serve_call(gate, key, idempotency_key="k", infer=boom)
        retried = await serve_call(gate, key, idempotency_key="k")
        again = await serve_call(gate, key, idempotency_key="k")
        await gate.close()
        return failed, retried, again

    failed, retried, again = asyncio.run(go())
    assert failed[0] == 500 and retried[0] == "ok" and again[0] == "replayed"
    with db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 1


def test_a_call_that_finds_its_key_used_sends_the_stored_reply(sqlite_db, customer, settings):
    """A claim left past its time (its server seemed dead) is taken over; when the slow first call
    then records, it is told the key was used and answers with the stored reply, not its own."""
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings.model_copy(update={"idempotency_claim_s": 0.05}), sqlite_db)

    async def slow():
        await asyncio.sleep(0.3)

    async def go():
        first = asyncio.ensure_future(serve_call(gate, key, idempotency_key="k", infer=slow))
        await asyncio.sleep(0.15)                                 # the first's claim has expired
        second = await serve_call(gate, key, idempotency_key="k")
        return await first, second

    first, second = asyncio.run(go())
    assert second[0] == "ok" and first[0] == "replayed" and first[1].body == second[1].body
    with sqlite_db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 1


def test_key_cache_forgets_at_once_on_changes_here_and_within_its_time_otherwise(sqlite_db, customer, settings):
    from sqlalchemy import update

    from modelshop.billing.keys import revoke_key
    from modelshop.db import utcnow

    made = create_key(sqlite_db, customer["id"], actor=ACTOR)
    other = create_key(sqlite_db, customer["id"], actor=ACTOR)
    gate = BillingGate(settings.model_copy(update={"key_cache_s": 0.5}), sqlite_db)

    async def go():
        await gate.authenticate(made["key"])
        revoke_key(sqlite_db, made["id"], actor=ACTOR)            # through this process: refused at once
        with pytest.raises(Unauthorized, match="was revoked"):
            await gate.authenticate(made["key"])
        await gate.authenticate(other["key"])
        with sqlite_db.session() as s:                           # as another process would: no bump here
            s.execute(update(ApiKey).where(ApiKey.id == other["id"]).values(status="revoked", revoked_at=utcnow()))
        await gate.authenticate(other["key"])                    # still trusted, for at most key_cache_s
        await asyncio.sleep(0.6)
        with pytest.raises(Unauthorized, match="was revoked"):
            await gate.authenticate(other["key"])
        set_status(sqlite_db, customer["id"], "suspended", actor=ACTOR)
        fresh = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
        with pytest.raises(Forbidden, match="suspended"):
            await gate.authenticate(fresh)
        await gate.close()

    asyncio.run(go())


# --- quota and wallet holds: calls admitted but not yet committed count against them.
# Before the holds, `admit` compared the quota (and the wallet) with the ledger alone, so every call in
# flight at the limit saw the same "used" and got in: 30 concurrent calls against a quota of 5 were all
# admitted, and 20 concurrent calls on a wallet good for 3 were all admitted.

def test_concurrent_calls_never_pass_the_quota(db, plan_files, settings):
    make_plans(db, plan_files, "free")                                 # quota: 5 requests, block
    customer = create_customer(db, "Q", "free", actor=ACTOR)
    key = create_key(db, customer["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings, db)

    async def go():
        return await asyncio.gather(*(serve_call(gate, key) for _ in range(30)))

    outcomes = [kind for kind, _ in asyncio.run(go())]
    assert outcomes.count("ok") == 5
    assert outcomes.count(402) == 25


def test_concurrent_calls_never_overdraw_a_prepaid_wallet(db, plan_files, settings):
    make_plans(db, plan_files, "prepaid")                              # 0.40 a request, prepaid
    customer = create_customer(db, "P", "prepaid", actor=ACTOR)
    key = create_key(db, customer["id"], actor=ACTOR)["key"]
    topup(db, customer["id"], "1.00", actor=ACTOR)                     # covers 2 calls (0.80), not a 3rd
    gate = BillingGate(settings, db)

    async def go():
        return await asyncio.gather(*(serve_call(gate, key) for _ in range(20)))

    outcomes = [kind for kind, _ in asyncio.run(go())]
    assert outcomes.count("ok") == 2                                   # as one by one: never below zero
    assert outcomes.count(402) == 18


def test_a_hold_is_given_back_on_commit_or_when_it_expires(sqlite_db, plan_files, settings, monkeypatch):
    make_plans(sqlite_db, plan_files, "free")
    customer = create_customer(sqlite_db, "Q", "free", actor=ACTOR)
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
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
