"""Generative calls under the billing gate: the ledger holds the input and output tokens the client was
told, a stream's usage is committed before its usage chunk, a cut stream is billed for what was
generated until the cut, admission reserves prompt + max_tokens against a prepaid wallet, and
/v1/models shows the caller's prices per million tokens."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import select

from modelshop.billing.tables import UsageEvent
from modelshop.db import get_database
from modelshop.platform import build_app
from tests.support import ACTOR, bearer, live_server, make_settings

HELLO = [{"role": "user", "content": "Hello! How can"}]
TOKEN_PLAN = {"code": "tok", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.0000002", "models": ["tiny"]},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.0000006", "models": ["tiny"]}]}


def shop(tmp_path, tiny_llama, plan: dict, **overrides):
    """A billing server's settings with the tiny model, `plan` and one customer: (settings, db, customer, key)."""
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.llm.registry import add_local

    settings = make_settings(tmp_path / "home", serve_gate="billing", llm_processes=False, **overrides)
    add_local("tiny", str(tiny_llama), settings=settings)
    db = get_database(settings)
    db.migrate()
    create_plan(db, parse_plan(plan), actor=ACTOR)
    customer = create_customer(db, "Acme", plan["code"], actor=ACTOR)["id"]
    return settings, db, customer, create_key(db, customer, actor=ACTOR)["key"]


def events(db, customer: int) -> list[UsageEvent]:
    with db.session() as s:
        return list(s.scalars(select(UsageEvent).where(UsageEvent.customer_id == customer).order_by(UsageEvent.id)))


@pytest.fixture
def token_shop(tmp_path, tiny_llama):
    return shop(tmp_path, tiny_llama, TOKEN_PLAN)


def test_the_ledger_holds_the_usage_the_client_was_told(token_shop):
    from fastapi.testclient import TestClient

    settings, db, customer, key = token_shop
    with TestClient(build_app(settings)) as c:
        r = c.post("/v1/chat/completions", headers=bearer(key),
                   json={"model": "tiny", "messages": HELLO, "max_tokens": 9, "temperature": 0})
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
        prices = {m["id"]: m["pricing"] for m in c.get("/v1/models", headers=bearer(key)).json()["data"]}
    [event] = events(db, customer)
    assert (event.input_tokens, event.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert event.tokens == usage["total_tokens"] and event.model == "tiny:1"
    assert event.route == "/v1/chat/completions" and event.request_id == r.headers["x-request-id"]
    assert prices["tiny"] == {"currency": "USD", "input_per_million": "0.20", "output_per_million": "0.60"}


def test_an_idempotency_key_meters_a_plain_call_once(token_shop):
    from fastapi.testclient import TestClient

    settings, db, customer, key = token_shop
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 5, "temperature": 0}
    with TestClient(build_app(settings)) as c:
        first = c.post("/v1/chat/completions", headers={**bearer(key), "Idempotency-Key": "once"}, json=body)
        again = c.post("/v1/chat/completions", headers={**bearer(key), "Idempotency-Key": "once"}, json=body)
    assert again.headers["x-idempotent-replay"] == "true" and again.json() == first.json()
    assert len(events(db, customer)) == 1


def test_a_streams_usage_is_committed_before_its_usage_chunk_and_a_cut_stream_pays_for_what_it_got(token_shop):
    settings, db, customer, key = token_shop

    async def go(base: str):
        async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=60) as c:
            body = {"model": "tiny", "messages": HELLO, "max_tokens": 12, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}
            seen_at_usage = None
            async with c.stream("POST", "/v1/chat/completions", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: {") and json.loads(line[6:])["choices"] == []:
                        usage = json.loads(line[6:])["usage"]
                        seen_at_usage = len(events(db, customer))   # read while the stream is still open
            assert seen_at_usage == 1
            # a client that reads a few chunks of a long stream and leaves
            cut = {**body, "max_tokens": 400}
            got = 0
            async with c.stream("POST", "/v1/chat/completions", json=cut) as r:
                async for line in r.aiter_lines():
                    delta = json.loads(line[6:])["choices"][0].get("delta", {}) if line.startswith("data: {") else {}
                    if delta.get("content"):
                        got += 1
                        if got == 3:
                            break
            for _ in range(100):              # the server notices at its next send
                if len(events(db, customer)) == 2:
                    break
                await asyncio.sleep(0.05)
            return usage

    with live_server(build_app(settings)) as base:
        usage = asyncio.run(go(base))
    done, cut = events(db, customer)
    assert (done.input_tokens, done.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert 3 <= cut.output_tokens < 400      # billed up to the cut, not for the 400 it asked for


def test_admission_reserves_prompt_plus_max_tokens_against_the_wallet(tmp_path, tiny_llama):
    from modelshop.billing.wallet import topup

    prepaid = {**TOKEN_PLAN, "code": "pre", "prepaid": True, "charges": [
        {"metric": "output_tokens", "model": "unit", "unit_price": "0.001"}]}   # $1 per 1000 output tokens
    settings, db, customer, key = shop(tmp_path, tiny_llama, prepaid)
    topup(db, customer, "0.05", actor=ACTOR)                        # good for 50 output tokens

    async def go(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=60) as c:
            body = {"model": "tiny", "messages": HELLO, "max_tokens": 20, "temperature": 0}
            got = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(6)))
            refused = [r for r in got if r.status_code == 402]
            assert refused and "top up" in refused[0].json()["error"]["message"]
            return [r.status_code for r in got]

    with live_server(build_app(settings)) as base:
        codes = asyncio.run(go(base))
    spent = sum(e.output_tokens for e in events(db, customer))
    assert codes.count(200) == len(events(db, customer)) and spent <= 50     # never past the wallet
