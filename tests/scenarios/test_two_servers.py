"""Two `modelshop serve` replicas sharing PostgreSQL and Redis enforce one rpm limit and one quota.

Both replicas are hammered at once through one customer key with `rpm` = 30 (a token bucket: 30 at
once, then 30 per minute), and through another customer's key whose plan has a quota of 50 requests
(action block). Whatever the interleaving:
  - rpm: calls answered 200 ≤ 30 + the refill over the run (30/60 per second elapsed), 429 otherwise;
  - quota: calls answered 200 ≤ 50, 402 otherwise, and the ledger holds exactly the calls answered.
The overshoot (admitted − allowed) is printed for each round. Measured here: 0 for the rpm limit
and 0 for the quota (the quota check counts the calls admitted and not yet committed, held in Redis);
before those holds, the quota let 60 of 120 calls through (overshoot 10). The quota is also used to
the last unit in practice: 50 admitted in every run measured.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import httpx
from sqlalchemy import func, select

from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.keys import create_key
from modelshop.billing.plans import parse_plan
from modelshop.billing.tables import UsageEvent
from modelshop.db import Database
from modelshop.settings import get_settings
from tests.scenarios.servers import ServerProcess, train_tfidf

RPM, QUOTA = 30, 50
CALLS = 120                  # per scenario, split evenly over the two replicas
CONCURRENCY = 12             # in flight per replica
ROUNDS = 2                   # the quota scenario is repeated on fresh customers


async def _hammer(urls: list[str], key: str, calls: int) -> tuple[dict[int, int], float]:
    """`calls` /predict calls spread over `urls`, CONCURRENCY in flight per replica; status counts, seconds."""
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=CONCURRENCY * len(urls))
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits) as client:
        gates = [asyncio.Semaphore(CONCURRENCY) for _ in urls]

        async def one(i: int) -> None:
            url = urls[i % len(urls)]
            async with gates[i % len(urls)]:
                r = await client.post(f"{url}/predict", json={"inputs": f"love it {i}"},
                                      headers={"Authorization": f"Bearer {key}"})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(calls)))
    return statuses, time.monotonic() - started


def _events(db: Database, customer_id: int) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(UsageEvent).where(UsageEvent.customer_id == customer_id))


def test_two_replicas_enforce_one_rpm_limit_and_one_quota(tmp_path, monkeypatch, settings, pg_url, redis_url,
                                                          capsys):
    monkeypatch.setenv("MODELSHOP_DATABASE_URL", pg_url)
    get_settings.cache_clear()
    train_tfidf(tmp_path)
    capsys.readouterr()
    db = Database(pg_url)
    db.migrate()
    create_plan(db, parse_plan({"code": "payg", "currency": "USD",
                                "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]}),
                actor="test")
    create_plan(db, parse_plan({"code": "capped", "currency": "USD",
                                "quota": {"metric": "requests", "limit": QUOTA, "action": "block"}}), actor="test")
    limited = create_customer(db, "Limited", "payg", actor="test")
    rpm_key = create_key(db, limited["id"], rpm=RPM, actor="test")["key"]

    # a fresh bucket prefix: no state left in the shared Redis by other runs
    env = {"MODELSHOP_RATE_LIMIT_PREFIX": f"test-{uuid.uuid4().hex[:12]}"}
    home = get_settings().home
    servers = [ServerProcess(home, pg_url, redis_url=redis_url, log=tmp_path / f"server{n}.log", extra_env=env)
               for n in range(2)]
    try:
        for server in servers:
            server.wait_healthy()
        urls = [s.url for s in servers]

        statuses, seconds = asyncio.run(_hammer(urls, rpm_key, CALLS))
        allowed = RPM + math.floor(seconds * RPM / 60)
        ok = statuses.get(200, 0)
        assert set(statuses) <= {200, 429}, statuses
        assert _events(db, limited["id"]) == ok
        print(f"\nrpm {RPM}: {ok} of {CALLS} admitted in {seconds:.1f} s over 2 replicas; allowed {allowed}; "
              f"overshoot {ok - allowed}")
        assert RPM <= ok <= allowed

        for round_ in range(ROUNDS):
            capped = create_customer(db, f"Capped {round_}", "capped", actor="test")
            quota_key = create_key(db, capped["id"], actor="test")["key"]
            statuses, seconds = asyncio.run(_hammer(urls, quota_key, CALLS))
            ok = statuses.get(200, 0)
            assert set(statuses) <= {200, 402}, statuses
            assert _events(db, capped["id"]) == ok
            print(f"quota {QUOTA}: {ok} of {CALLS} admitted in {seconds:.1f} s over 2 replicas; "
                  f"overshoot {ok - QUOTA}")
            # never over; near the limit a call may be refused while another's hold is still counted (a
            # few ms between its commit and its release), so allow a little under (measured: exactly 50)
            assert QUOTA - 5 <= ok <= QUOTA
    finally:
        for server in servers:
            server.stop()
        db.dispose()
    with capsys.disabled():
        print(capsys.readouterr().out, end="")
