"""Crash test: a metering server killed with SIGKILL mid-load loses no answered call and bills none twice.

A real `modelshop serve` process (billing gate, a tfidf model, one customer key) takes a load of
concurrent /predict calls, each with its own Idempotency-Key; once some have been answered it is
SIGKILLed. Then, straight from the database:
  - every call answered 200 is in the usage ledger exactly once (the reply left after the commit);
  - every call cut off by the kill is in it at most once;
and after a restart on the same database, retrying the cut-off calls with their Idempotency-Key
makes every call appear exactly once (a cut-off call's key stays claimed until
`idempotency_claim_s` has passed, so its retry gets 409 with Retry-After until then, as a client
retrying a crashed call would see it), while retries of calls already answered get the stored reply
back (`x-idempotent-replay: true`, same body) without a second event. The monthly counters that
quota checks read agree with the ledger (same transaction). The server's log never holds a key.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select

from modelshop.billing.tables import UsageCounter, UsageEvent
from modelshop.db import Database
from modelshop.settings import get_settings
from tests.scenarios.servers import ServerProcess, payg_shop

CALLS = 240          # calls in the load
CONCURRENCY = 24     # in flight at once
KILL_AFTER = 60      # answered calls before the SIGKILL
TIMEOUT = httpx.Timeout(30.0)
CLAIM_S = 2.0        # how long a cut-off call keeps its Idempotency-Key claimed


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crash.db'}"
    return request.getfixturevalue("pg_url")


def _setup(tmp_path, monkeypatch, url: str) -> tuple[Database, int, str]:
    return payg_shop(tmp_path, monkeypatch, url, "Crash")


async def _call(client: httpx.AsyncClient, url: str, key: str, i: int):
    """("ok", response) | ("cut", exception) | (status, response)."""
    try:
        r = await client.post(f"{url}/predict", json={"inputs": f"great product number {i}"},
                              headers={"Authorization": f"Bearer {key}", "Idempotency-Key": f"crash-{i}"})
    except httpx.TransportError as e:
        return "cut", e
    return ("ok" if r.status_code == 200 else r.status_code), r


async def _load_and_kill(server: ServerProcess, key: str) -> dict[int, tuple]:
    results: dict[int, tuple] = {}
    answered = asyncio.Event()
    gate = asyncio.Semaphore(CONCURRENCY)
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)

    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        async def one(i: int) -> None:
            async with gate:
                results[i] = await _call(client, server.url, key, i)
            if sum(1 for kind, _ in results.values() if kind == "ok") >= KILL_AFTER:
                answered.set()

        async def killer() -> None:
            await asyncio.wait_for(answered.wait(), timeout=120)
            server.kill()

        await asyncio.gather(killer(), *(one(i) for i in range(CALLS)))
    return results


async def _retry(url: str, key: str, indices: list[int]) -> dict[int, tuple]:
    """Retry each call as a client would: again after Retry-After while its key is still claimed (409)."""
    limits = httpx.Limits(max_connections=8)
    conflicts = 0

    async def until_done(client, i):
        nonlocal conflicts
        for _ in range(20):
            kind, r = await _call(client, url, key, i)
            if kind != 409:
                return kind, r
            conflicts += 1
            await asyncio.sleep(float(r.headers["Retry-After"]))
        return kind, r

    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        done = await asyncio.gather(*(until_done(client, i) for i in indices))
    print(f"retries answered 409 (key still claimed by a call cut off by the kill): {conflicts}")
    return dict(zip(indices, done, strict=True))


def _ledger(db: Database, customer_id: int) -> dict[str, int]:
    with db.session() as s:
        rows = s.execute(select(UsageEvent.idempotency_key, func.count()).where(UsageEvent.customer_id == customer_id)
                         .group_by(UsageEvent.idempotency_key)).all()
    return {k: n for k, n in rows}


def _counted_requests(db: Database, customer_id: int) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.coalesce(func.sum(UsageCounter.requests), 0))
                            .where(UsageCounter.customer_id == customer_id)))


def test_sigkill_mid_load_loses_no_answered_call_and_bills_none_twice(tmp_path, monkeypatch, settings,
                                                                     database_url):
    db, customer_id, key = _setup(tmp_path, monkeypatch, database_url)
    home = get_settings().home
    logs = tmp_path / "server.log"
    claim = {"MODELSHOP_IDEMPOTENCY_CLAIM_S": str(CLAIM_S)}
    server = ServerProcess(home, database_url, log=logs, extra_env=claim).wait_healthy()
    wrong = [key[:-1] + ("A" if key[-1] != "A" else "B"), "ms_live_" + "w" * 43]
    try:
        for bad in wrong:
            r = httpx.post(f"{server.url}/predict", json={"inputs": "hi"}, headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.json()["error_type"] == "unauthorized"
        results = asyncio.run(_load_and_kill(server, key))
    finally:
        server.kill()

    answered = {i for i, (kind, _) in results.items() if kind == "ok"}
    cut = {i for i, (kind, _) in results.items() if kind == "cut"}
    others = {i: kind for i, (kind, _) in results.items() if kind not in ("ok", "cut")}
    assert not others, f"unexpected statuses before the kill: {others}"
    assert answered | cut == set(range(CALLS))
    assert len(answered) >= KILL_AFTER and cut, (len(answered), len(cut))

    ledger = _ledger(db, customer_id)
    missing = sorted(i for i in answered if ledger.get(f"crash-{i}") != 1)
    assert not missing, f"answered 200 but not in the ledger exactly once: {missing[:10]}"
    assert all(ledger.get(f"crash-{i}", 0) <= 1 for i in cut)
    assert set(ledger) <= {f"crash-{i}" for i in range(CALLS)}
    assert _counted_requests(db, customer_id) == sum(ledger.values())
    committed_but_cut = sorted(i for i in cut if f"crash-{i}" in ledger)
    print(f"\n{database_url.split(':')[0]}: {len(answered)} answered, {len(cut)} cut off by SIGKILL, "
          f"of which {len(committed_but_cut)} were metered before the kill")

    # restart on the same database; retry the cut-off calls and a few answered ones with the same keys
    server = ServerProcess(home, database_url, log=logs, extra_env=claim).wait_healthy()
    try:
        again = sorted(answered)[:: max(1, len(answered) // 10)]
        retried = asyncio.run(_retry(server.url, key, sorted(cut) + again))
    finally:
        server.stop()

    failed = {i: kind for i, (kind, _) in retried.items() if kind != "ok"}
    assert not failed, f"retries that did not get 200: {failed}"
    for i in again:                                   # the stored first reply, byte for byte
        first, second = results[i][1], retried[i][1]
        assert second.headers.get("x-idempotent-replay") == "true"
        assert second.content == first.content
        assert second.headers["x-request-id"] == first.headers["x-request-id"]
    for i in committed_but_cut:                       # metered before the kill: replayed, not metered again
        assert retried[i][1].headers.get("x-idempotent-replay") == "true"

    ledger = _ledger(db, customer_id)
    assert ledger == {f"crash-{i}": 1 for i in range(CALLS)}
    logged = logs.read_text(errors="replace")       # both servers' stdout and stderr
    assert "authentication failed" in logged
    for secret in [key, *wrong]:                     # no key, right or wrong, is ever logged
        assert secret[8:] not in logged
    assert _counted_requests(db, customer_id) == CALLS
    db.dispose()
