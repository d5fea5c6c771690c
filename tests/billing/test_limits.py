"""The limiters: local token buckets refill over time; in the real Redis two gates (two replicas) share one
rpm limit and the quota holds; and what the limits and quotas do when Redis cannot be reached (a closed
port: a real connection failure, no mock)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer
from modelshop.billing.keys import create_key
from modelshop.billing.limits import LocalLimiter, RedisLimiter, make_limiter
from modelshop.errors import RateLimited, ServiceUnavailable
from modelshop.gate import Units
from modelshop.settings import Settings
from tests.support import ACTOR, free_port, make_plans

RPM = 30


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
    customer = create_customer(sqlite_db, "Rex", "vol", actor=ACTOR)
    key = create_key(sqlite_db, customer["id"], rpm=RPM, actor=ACTOR)["key"]
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
    assert refused > 0 and allowed >= RPM and overshoot <= 0

    # the same two replicas each with in-process buckets: each admits a full bucket (the reason for Redis)
    local = settings.model_copy(update={"redis_url": None})
    local_allowed, _, local_elapsed = asyncio.run(go(local))
    local_overshoot = local_allowed - RPM - local_elapsed * RPM / 60
    print(f"in-process, 2 replicas: {local_allowed} admitted (overshoot {local_overshoot:+.2f})")
    assert local_allowed >= 2 * RPM


DOWN = "redis://127.0.0.1:1/0"   # a closed port: every call to it fails at once, as a real outage does


def test_an_unreachable_redis_admits_rate_limited_calls_and_warns_once(sqlite_db, plan_files, settings, caplog):
    make_plans(sqlite_db, plan_files, "vol")
    customer = create_customer(sqlite_db, "Una", "vol", actor=ACTOR)
    key = create_key(sqlite_db, customer["id"], rpm=1, actor=ACTOR)["key"]
    gate = BillingGate(settings.model_copy(update={"redis_url": DOWN}), sqlite_db)

    async def go():
        p = await gate.authenticate(key)
        for _ in range(3):
            await gate.admit(p, "minilm", Units())   # rpm 1, yet all three pass: rate limits fail open
        await gate.close()

    with caplog.at_level(logging.WARNING, logger="modelshop.billing.limits"):
        asyncio.run(go())
    warnings = [r.getMessage() for r in caplog.records if r.name == "modelshop.billing.limits"]
    assert len(warnings) == 1, warnings   # once per outage, not once per call
    assert warnings[0].startswith("Redis at 127.0.0.1:1 is unreachable (ConnectionError")
    assert "rate limits fail open and quotas and prepaid wallets fail closed" in warnings[0]


@pytest.mark.parametrize("plan", ["free", "prepaid"])
def test_an_unreachable_redis_refuses_quota_and_wallet_calls_with_503(sqlite_db, plan_files, settings, plan):
    """Under a blocking quota or a prepaid wallet the calls under way on other replicas are unknown while
    Redis is down, so (by default) the call is refused rather than let the quota or wallet be overspent."""
    make_plans(sqlite_db, plan_files, plan)
    customer = create_customer(sqlite_db, "Quin", plan, actor=ACTOR)
    key = create_key(sqlite_db, customer["id"], actor=ACTOR)["key"]
    gate = BillingGate(settings.model_copy(update={"redis_url": DOWN}), sqlite_db)

    async def go():
        p = await gate.authenticate(key)
        try:
            with pytest.raises(ServiceUnavailable) as e:
                await gate.admit(p, "minilm", Units())
            return e.value
        finally:
            await gate.close()

    error = asyncio.run(go())
    assert error.status_code == 503 and error.error_type == "service_unavailable"
    assert str(error) == ("Redis at 127.0.0.1:1 is unreachable, so the plan's quota or prepaid balance cannot be "
                          "checked and the call is refused; retry in a few seconds")
    assert error.retry_after == 5


def test_the_settings_choose_open_or_closed_for_each_kind(settings, sqlite_db):
    """MODELSHOP_RATE_LIMITS_WHEN_REDIS_DOWN / MODELSHOP_QUOTAS_WHEN_REDIS_DOWN, the other way round."""
    flipped = settings.model_copy(update={"redis_url": DOWN, "rate_limits_when_redis_down": "closed",
                                          "quotas_when_redis_down": "open"})
    limiter = make_limiter(flipped)
    assert isinstance(limiter, RedisLimiter) and isinstance(make_limiter(settings), LocalLimiter)

    async def go():
        try:
            with pytest.raises(ServiceUnavailable, match="so the key's rate limit cannot be checked"):
                await limiter.acquire(7, 10, None, 0)
            assert (await limiter.acquire(7, None, None, 0)).allowed   # no limit on the key: nothing to check
            assert await limiter.reserve("held:1:2026-01:requests", "m", 3, 60) == 3   # the ledger alone decides
            await limiter.release("held:1:2026-01:requests", "m", 3)                   # never raises
            return await limiter.health()
        finally:
            await limiter.close()

    assert asyncio.run(go()) == "unreachable"
    gate = BillingGate(flipped, sqlite_db)                          # the gate builds the limiter they name
    assert isinstance(gate.limiter, RedisLimiter)
    assert (gate.limiter.limits_when_down, gate.limiter.quotas_when_down) == ("closed", "open")
    defaults = Settings.model_fields
    assert (defaults["rate_limits_when_redis_down"].default, defaults["quotas_when_redis_down"].default) == \
        ("open", "closed")


@contextlib.contextmanager
def redis_server(port: int):
    """A real redis-server of this test's own on `port` (skipped where the binary is absent)."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("needs the redis-server binary to stop and restart a Redis")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.02)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_redis_that_comes_back_ends_the_outage(settings, caplog):
    """Up, then stopped (one warning; /health would say unreachable), then started again (said once)."""
    port = free_port()
    limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", f"test-{uuid.uuid4().hex}")

    async def check():
        return await limiter.health(), (await limiter.acquire(1, 60, None, 0)).remaining

    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.WARNING, logger="modelshop.billing.limits"):
            with redis_server(port):
                assert loop.run_until_complete(check()) == ("ok", 59)
            assert loop.run_until_complete(check()) == ("unreachable", 60)   # admitted, without a limit
            assert loop.run_until_complete(check()) == ("unreachable", 60)
            with redis_server(port):
                assert loop.run_until_complete(check()) == ("ok", 59)       # a fresh Redis: a full bucket
        loop.run_until_complete(limiter.close())
    finally:
        loop.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "modelshop.billing.limits"]
    assert len(messages) == 2, messages
    assert "is unreachable" in messages[0] and "is reachable again after" in messages[1]


def test_rate_limit_headers_from_an_error():
    from modelshop.serve.app import error_headers

    e = RateLimited("slow down", retry_after=11.2, limit=5, remaining=0, reset=59.01)
    assert error_headers(e) == {
        "RateLimit-Limit": "5", "RateLimit-Remaining": "0", "RateLimit-Reset": "60", "Retry-After": "12"}
    assert error_headers(RateLimited("busy", retry_after=0.2)) == {"Retry-After": "1"}


def test_local_buckets_refill_over_time():
    now = [0.0]
    limiter = LocalLimiter(clock=lambda: now[0])

    async def take(n):
        return [(await limiter.acquire(1, 60, None, 0)).allowed for _ in range(n)]

    assert asyncio.run(take(61)) == [True] * 60 + [False]
    now[0] = 2.5                                                 # 60 a minute: one a second
    assert asyncio.run(take(3)) == [True, True, False]


def test_redis_holds_are_shared_and_expire(settings, redis_url):
    prefix = f"test-{uuid.uuid4().hex[:12]}"

    async def go():
        a, b = RedisLimiter(redis_url, prefix), RedisLimiter(redis_url, prefix)     # two replicas
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
