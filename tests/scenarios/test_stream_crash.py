"""Crash test for streams: a metering server SIGKILLed while streams are mid-way bills every stream it
finished once and none it never finished.

A real `modelshop serve` process (billing gate, the tiny Llama in its own engine process, a customer
paying per token) streams completions to concurrent clients: short ones that finish, long ones still
generating. Once the short ones are done and the long ones have sent some tokens, it is SIGKILLed.
Then, from the database:
  - every stream that reached `[DONE]` is in the ledger exactly once, with the usage its client was told
    (the usage is committed before the usage chunk and `[DONE]` leave);
  - a stream the kill cut off mid-generation is not in it (the server never finished it, nor saw the
    client leave: nothing to bill), and no event has more output tokens than was asked for.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import select

from modelshop.billing.tables import UsageEvent
from modelshop.db import Database
from modelshop.settings import get_settings
from tests.scenarios.servers import ServerProcess
from tests.support import ACTOR

SHORT, LONG = 6, 8            # streams that finish, streams cut by the kill
HELLO = [{"role": "user", "content": "Hello! How can"}]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'stream-crash.db'}"
    return request.getfixturevalue("pg_url")


def _shop(monkeypatch, url: str, tiny_llama) -> tuple[Database, int, str]:
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.llm.registry import add_local

    monkeypatch.setenv("MODELSHOP_DATABASE_URL", url)
    get_settings.cache_clear()
    add_local("tiny", str(tiny_llama))
    db = Database(url)
    db.migrate()
    create_plan(db, parse_plan({"code": "tok", "currency": "USD", "charges": [
        {"metric": "output_tokens", "model": "unit", "unit_price": "0.000001"}]}), actor=ACTOR)
    customer = create_customer(db, "Streamer", "tok", actor=ACTOR)["id"]
    return db, customer, create_key(db, customer, actor=ACTOR)["key"]


async def _streams(server: ServerProcess, key: str) -> list[dict]:
    """Start every stream; SIGKILL the server once the short ones are done and each long one sent tokens."""
    results: list[dict] = [{} for _ in range(SHORT + LONG)]
    progress = {i: 0 for i in range(SHORT + LONG)}

    async def one(client: httpx.AsyncClient, i: int) -> None:
        max_tokens = 8 if i < SHORT else 480
        out = results[i]
        out.update(max_tokens=max_tokens, done=False, usage=None, request_id=None)
        body = {"model": "tiny", "messages": HELLO, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        try:
            async with client.stream("POST", f"{server.url}/v1/chat/completions", json=body,
                                     headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status_code == 200, await r.aread()
                out["request_id"] = r.headers["x-request-id"]
                async for line in r.aiter_lines():
                    if line == "data: [DONE]":
                        out["done"] = True
                    elif line.startswith("data: {"):
                        chunk = json.loads(line[6:])
                        if chunk["choices"] == []:
                            out["usage"] = chunk["usage"]
                        progress[i] += 1
        except (httpx.TransportError, httpx.RemoteProtocolError):
            pass

    async def killer() -> None:
        for _ in range(600):
            if all(results[i].get("done") for i in range(SHORT)) and \
                    all(progress[i] >= 3 for i in range(SHORT, SHORT + LONG)):
                server.kill()
                return
            await asyncio.sleep(0.01)
        server.kill()
        raise AssertionError(f"the streams did not get going: {progress}")

    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        await asyncio.gather(killer(), *(one(client, i) for i in range(SHORT + LONG)))
    return results


def test_sigkill_mid_stream_bills_finished_streams_once_and_unfinished_ones_never(tmp_path, monkeypatch, settings,
                                                                                   database_url, tiny_llama):
    db, customer, key = _shop(monkeypatch, database_url, tiny_llama)
    server = ServerProcess(get_settings().home, database_url, log=tmp_path / "server.log").wait_healthy()
    try:
        results = asyncio.run(_streams(server, key))
    finally:
        server.kill()

    with db.session() as s:
        ledger = {e.request_id: e for e in s.scalars(select(UsageEvent).where(UsageEvent.customer_id == customer))}
    done = [r for r in results if r["done"]]
    cut = [r for r in results if not r["done"]]
    assert len(done) >= SHORT and cut, (len(done), len(cut))
    for r in done:
        event = ledger.get(r["request_id"])
        assert event is not None, "a stream that reached [DONE] is not in the ledger"
        assert (event.input_tokens, event.output_tokens) == (r["usage"]["prompt_tokens"],
                                                             r["usage"]["completion_tokens"])
    assert not [r for r in cut if r["request_id"] in ledger], "a stream the server never finished was billed"
    assert len(ledger) == len(done)
    assert all(e.output_tokens <= 480 for e in ledger.values())
    db.dispose()
