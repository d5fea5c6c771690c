"""Through a real `modelshop serve`: one Idempotency-Key buys one answer, and keys scoped to a version work.

The abuse this pins: 10 concurrent /predict calls share one Idempotency-Key, each with other texts.
Before the key was claimed ahead of inference, all 10 were answered (10 different bodies) and the
ledger grew by one request: unlimited inference for the price of one call.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from modelshop.billing.keys import create_key
from modelshop.billing.tables import UsageEvent
from modelshop.settings import get_settings
from tests.scenarios.servers import ServerProcess, payg_shop


def test_concurrent_calls_sharing_a_key_get_one_answer_and_scoped_keys_work(tmp_path, monkeypatch, settings):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    db, customer_id, key = payg_shop(tmp_path, monkeypatch, url, "Abuser")   # serves m:1
    pinned = create_key(db, customer_id, models=["m:1"], actor="test")["key"]
    other_version = create_key(db, customer_id, models=["m:2"], actor="test")["key"]

    def body(i: int) -> dict:
        return {"inputs": [[f"great product {i}-{j}"] for j in range(50)]}

    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "one-key"}

    async def burst(base: str):
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(*[client.post(f"{base}/predict", json=body(i), headers=headers)
                                          for i in range(10)])

    server = ServerProcess(get_settings().home, url, log=tmp_path / "server.log").wait_healthy()
    try:
        replies = asyncio.run(burst(server.url))
        first = next(i for i, r in enumerate(replies) if r.status_code == 200)
        again = httpx.post(f"{server.url}/predict", json=body(first), headers=headers)
        changed = httpx.post(f"{server.url}/predict", json=body(first + 1), headers=headers)
        scoped = [httpx.post(f"{server.url}/predict?model=m", json={"inputs": "great"},
                             headers={"Authorization": f"Bearer {k}"}) for k in (pinned, other_version)]
    finally:
        server.stop()

    codes = [r.status_code for r in replies]
    assert sorted(codes) == [200] + [422] * 9, codes           # nine other requests under one key: no answer
    assert all("another request" in r.json()["error"] for r in replies if r.status_code == 422)
    # the same request again gets the first reply, byte for byte; another body still gets none
    assert again.status_code == 200 and again.headers["x-idempotent-replay"] == "true"
    assert again.content == replies[first].content
    assert changed.status_code == 422
    with db.session() as s:
        assert s.scalar(select(func.count(UsageEvent.id))) == 1 + 1   # the burst's one answer, the pinned key's call
    assert scoped[0].status_code == 200 and scoped[0].headers["x-model"] == "m:1"
    assert scoped[1].status_code == 403 and 'may not call model "m:1"' in scoped[1].json()["error"]
    db.dispose()
