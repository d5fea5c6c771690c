"""Rate limits in the real Redis: two gates (two replicas) sharing it enforce one rpm limit."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer
from modelshop.billing.keys import create_key
from modelshop.errors import RateLimited
from modelshop.serve.gate import Units
from tests.billing.conftest import ADMIN, make_plans

REDIS_URL = "redis://127.0.0.1:6379/0"
RPM = 30


@pytest.fixture
def redis_url():
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379 ({type(e).__name__})")
    finally:
        client.close()
    return REDIS_URL


async def _hammer(gates, principal, seconds: float) -> tuple[int, int, float]:
    """Both replicas admit as fast as they can for `seconds`; (allowed, refused, elapsed)."""
    allowed = refused = 0
    start = time.monotonic()

    async def replica(gate):
        nonlocal allowed, refused
        while time.monotonic() - start < seconds:
            try:
                await gate.admit(principal, "minilm", Units())
                allowed += 1
            except RateLimited as e:
                refused += 1
                assert 0 < e.retry_after <= 60 / RPM + 0.01
                await asyncio.sleep(0.01)

    await asyncio.gather(*[replica(g) for g in gates for _ in range(4)])
    return allowed, refused, time.monotonic() - start


def test_two_replicas_share_one_rpm_limit(sqlite_db, plan_files, settings, redis_url):
    make_plans(sqlite_db, plan_files, "vol")
    customer = create_customer(sqlite_db, "Rex", "vol", actor=ADMIN)
    key = create_key(sqlite_db, customer["id"], rpm=RPM, actor=ADMIN)["key"]
    shared = settings.model_copy(update={"redis_url": redis_url, "rate_limit_prefix": f"test-{uuid.uuid4().hex}"})

    async def go(config):
        gates = [BillingGate(config, sqlite_db), BillingGate(config, sqlite_db)]
        principal = await gates[0].authenticate(key)
        try:
            return await _hammer(gates, principal, 1.5)
        finally:
            for g in gates:
                await g.close()

    allowed, refused, elapsed = asyncio.run(go(shared))
    ceiling = RPM + elapsed * RPM / 60            # a full bucket plus what refilled meanwhile
    overshoot = allowed - ceiling
    print(f"\nredis, 2 replicas × 4 workers, rpm {RPM}, {elapsed:.2f} s: {allowed} admitted, {refused} refused, "
          f"ceiling {ceiling:.2f}, overshoot {overshoot:+.2f}")
    assert refused > 0 and RPM <= allowed and overshoot <= 0

    # the same two replicas each with in-process buckets: each admits a full bucket (the reason for Redis)
    local = settings.model_copy(update={"redis_url": None})
    local_allowed, _, local_elapsed = asyncio.run(go(local))
    local_overshoot = local_allowed - RPM - local_elapsed * RPM / 60
    print(f"in-process, 2 replicas: {local_allowed} admitted (overshoot {local_overshoot:+.2f})")
    assert local_allowed >= 2 * RPM


def test_an_unreachable_redis_admits_and_warns(sqlite_db, plan_files, settings, caplog):
    make_plans(sqlite_db, plan_files, "vol")
    customer = create_customer(sqlite_db, "Una", "vol", actor=ADMIN)
    key = create_key(sqlite_db, customer["id"], rpm=1, actor=ADMIN)["key"]
    gate = BillingGate(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}), sqlite_db)

    async def go():
        p = await gate.authenticate(key)
        for _ in range(3):
            await gate.admit(p, "minilm", Units())
        await gate.close()

    asyncio.run(go())
    assert "rate limiter unavailable (ConnectionError); admitting without a limit" in caplog.text


def test_rate_limit_headers_from_an_error():
    from modelshop.billing.limits import ratelimit_headers

    e = RateLimited("slow down", retry_after=11.2, limit=5, remaining=0, reset=59.01)
    assert ratelimit_headers(e.extra, e.retry_after) == {
        "RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "60", "Retry-After": "12"}
    assert ratelimit_headers(None) == {}
