"""The gateway against a stand-in provider (tests/standin.py) on loopback: relayed streams, the provider's
usage as the truth (either final-chunk shape, never twice), estimates marked when it sends none,
fallbacks before the first byte, Retry-After and the circuit breaker, 502/504 that say what failed,
a client that leaves mid-stream, keys that never cross, and a wallet no burst of calls overdraws."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlalchemy import select

from modelshop.billing.tables import UsageEvent
from modelshop.db import get_database
from modelshop.platform import build_app
from tests.standin import PROMPT_TOKENS, WORDS, Provider
from tests.support import ACTOR, bearer, live_server, make_settings

HELLO = [{"role": "user", "content": "Where is my parcel?"}]
PROVIDER_KEY = "sk-provider-" + "p" * 24
PLAN = {"code": "tok", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002"}]}


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    with live_server(p.app) as base:
        p.base = base + "/v1"
        yield p


def gateway(tmp_path, provider, plan=PLAN, **models):
    """A billing server's settings with upstream models (name → (provider model, options)), one customer."""
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.llm.upstream import add_upstream

    settings = make_settings(tmp_path / "home", serve_gate="billing")
    for name, (upstream, options) in models.items():
        add_upstream(name, provider.base, upstream, key_env="STANDIN_KEY", settings=settings,
                     **{"cost_input": "0.05", "cost_output": "0.10", **options})
    db = get_database(settings)
    db.migrate()
    create_plan(db, parse_plan(plan), actor=ACTOR)
    customer = create_customer(db, "Acme", plan["code"], actor=ACTOR)["id"]
    return settings, db, customer, create_key(db, customer, actor=ACTOR)["key"]


def events(db, customer) -> list[UsageEvent]:
    with db.session() as s:
        return list(s.scalars(select(UsageEvent).where(UsageEvent.customer_id == customer).order_by(UsageEvent.id)))


@pytest.fixture(autouse=True)
def provider_key(monkeypatch):
    monkeypatch.setenv("STANDIN_KEY", PROVIDER_KEY)


def chat(base, key, model, **body):
    return httpx.post(f"{base}/v1/chat/completions", headers=bearer(key), timeout=30,
                      json={"model": model, "messages": HELLO, **body})


def sse(text: str) -> list:
    return [json.loads(b[6:]) if b[6:] != "[DONE]" else "[DONE]" for b in text.split("\n\n") if b.startswith("data: ")]


def test_relayed_plain_and_streamed_with_the_providers_usage_and_keys_that_never_cross(tmp_path, provider):
    from openai import OpenAI

    settings, db, customer, key = gateway(tmp_path, provider, up=("ok", {}), last=("ok-last", {}))
    before = len(provider.seen)
    with live_server(build_app(settings)) as base:
        client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        done = client.chat.completions.create(model="up", messages=HELLO)
        assert done.choices[0].message.content == "".join(f"w{i} " for i in range(WORDS))
        assert done.model == "up" and done.usage.prompt_tokens == PROMPT_TOKENS
        assert done.usage.completion_tokens == WORDS
        chunks = list(client.chat.completions.create(model="up", messages=HELLO, stream=True,
                                                     stream_options={"include_usage": True}))
        assert [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content] == \
            [f"w{i} " for i in range(WORDS)]                                       # relayed chunk by chunk
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == WORDS
        plain = sse(httpx.post(f"{base}/v1/chat/completions", headers=bearer(key),
                               json={"model": "last", "messages": HELLO, "stream": True}).text)
        assert all("usage" not in c for c in plain[:-1])                           # not asked: not forwarded
        text = client.completions.create(model="up", prompt="Refunds take", max_tokens=3)
        assert text.choices[0].text == "w0 w1 w2 " and text.usage.completion_tokens == 3
        listed = {m.id: m for m in client.models.list()}
        assert listed["up"].source == "upstream" and provider.base not in json.dumps(listed["up"].model_dump())
    ledger = events(db, customer)
    assert [(e.model, e.input_tokens, e.output_tokens) for e in ledger] == [
        ("up:1", PROMPT_TOKENS, WORDS), ("up:1", PROMPT_TOKENS, WORDS), ("last:1", PROMPT_TOKENS, WORDS),
        ("up:1", PROMPT_TOKENS, 3)]                                               # the provider's, once each
    sent = provider.seen[before:]
    assert all(s["authorization"] == f"Bearer {PROVIDER_KEY}" for s in sent)    # the provider's key only
    assert not any(key in json.dumps(s) for s in sent)                         # never the customer's
    assert all(s["body"]["stream"] and s["body"]["stream_options"] == {"include_usage": True} for s in sent)


def test_no_usage_from_the_provider_is_counted_here_and_marked_estimated(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, quiet=("no-usage", {}))
    with live_server(build_app(settings)) as base:
        late = [{"role": "user", "content": "My parcel is three days late, where is it?"}]
        r = chat(base, key, "quiet", messages=late)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]
    assert usage["prompt_tokens"] != PROMPT_TOKENS and usage["completion_tokens"] >= 1   # our own count
    [event] = events(db, customer)
    assert (event.input_tokens, event.output_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    if hasattr(event, "estimated"):
        assert event.estimated


def test_fallback_before_the_first_byte_is_billed_at_the_model_that_answered(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, a=("fail-500", {"fallbacks": ["b"]}), b=("ok", {}))
    with live_server(build_app(settings)) as base:
        r = chat(base, key, "a")
        streamed = httpx.post(f"{base}/v1/chat/completions", headers=bearer(key),
                              json={"model": "a", "messages": HELLO, "stream": True})
    assert r.status_code == 200 and r.json()["model"] == "b" and r.headers["x-modelshop-upstream"] == "b"
    assert streamed.headers["x-modelshop-upstream"] == "b" and sse(streamed.text)[0]["model"] == "b"
    assert [e.model for e in events(db, customer)] == ["b:1", "b:1"]


def test_retry_after_cools_an_upstream_down_and_requests_go_straight_to_its_fallback(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, busy=("fail-429", {"fallbacks": ["b"]}), b=("ok", {}))
    before = provider.count("fail-429")
    with live_server(build_app(settings)) as base:
        answers = [chat(base, key, "busy") for _ in range(3)]
    assert all(r.status_code == 200 and r.json()["model"] == "b" for r in answers)
    assert provider.count("fail-429") - before == 1        # its Retry-After (7 s) was honoured


def test_every_upstream_failing_is_502_or_504_saying_which_failed_how(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, a=("fail-500", {"fallbacks": ["t"]}),
                                          t=("slow", {"timeout_s": 0.3}), z=("fail-500", {}))
    with live_server(build_app(settings)) as base:
        timed_out = chat(base, key, "a")
        failed = chat(base, key, "z")
    assert timed_out.status_code == 504, timed_out.text
    message = timed_out.json()["error"]["message"]
    assert "a: failed (HTTP 500: the provider is down)" in message and "t: timed out after 0.3 s" in message
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_failed"
    for r in (timed_out, failed):
        assert "127.0.0.1" not in r.text and PROVIDER_KEY not in r.text and key not in r.text
    assert events(db, customer) == []                      # nothing answered, nothing billed


def test_an_upstream_that_breaks_off_mid_stream_ends_it_with_an_error_and_no_bill(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, cut=("cut", {}))
    with live_server(build_app(settings)) as base:
        r = httpx.post(f"{base}/v1/chat/completions", headers=bearer(key),
                       json={"model": "cut", "messages": HELLO, "stream": True})
    chunks = sse(r.text)
    assert "error" in chunks[-1] and "broke off" in chunks[-1]["error"]["message"]
    assert "[DONE]" not in chunks and events(db, customer) == []


def test_a_client_that_leaves_mid_stream_closes_the_upstream_and_pays_for_what_it_got(tmp_path, provider):
    settings, db, customer, key = gateway(tmp_path, provider, long=("long", {}))

    async def go(base):
        async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=30) as c:
            got = 0
            async with c.stream("POST", "/v1/chat/completions",
                                json={"model": "long", "messages": HELLO, "stream": True, "max_tokens": 400}) as r:
                async for line in r.aiter_lines():
                    if '"content":"w' in line:
                        got += 1
                        if got == 5:
                            break
        for _ in range(100):
            if "long" in provider.closed and events(db, customer):
                return
            await asyncio.sleep(0.05)

    with live_server(build_app(settings)) as base:
        asyncio.run(go(base))
    assert "long" in provider.closed                       # the upstream connection was closed
    [event] = events(db, customer)
    assert 5 <= event.output_tokens < 400                  # what it got (counted here), not all 400


def test_concurrent_calls_never_overshoot_a_prepaid_wallet(tmp_path, provider):
    from modelshop.billing.wallet import topup

    prepaid = {"code": "pre", "currency": "USD", "prepaid": True, "charges": [
        {"metric": "output_tokens", "model": "unit", "unit_price": "0.01"}]}        # 1 cent a token
    settings, db, customer, key = gateway(tmp_path, provider, plan=prepaid, up=("ok", {}))
    topup(db, customer, "0.20", actor=ACTOR)                                       # good for 20 tokens

    async def go(base):
        async with httpx.AsyncClient(base_url=base, headers=bearer(key), timeout=30) as c:
            body = {"model": "up", "messages": HELLO, "max_tokens": WORDS}
            return await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(24)))

    with live_server(build_app(settings)) as base:
        answers = asyncio.run(go(base))
    ok = [r for r in answers if r.status_code == 200]
    assert ok and all(r.status_code in (200, 402) for r in answers)
    spent = sum(e.output_tokens for e in events(db, customer))
    assert spent <= 20 and len(events(db, customer)) == len(ok)                     # overshoot 0


@pytest.mark.filterwarnings("ignore::UserWarning")   # litellm's own import warns about its pydantic types
def test_litellm_as_a_client_plain_and_streamed(tmp_path, provider, monkeypatch):
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")     # litellm would fetch its price map
    litellm = pytest.importorskip("litellm")

    settings, db, customer, key = gateway(tmp_path, provider, up=("ok", {}))
    with live_server(build_app(settings)) as base:
        done = litellm.completion(model="openai/up", api_base=base + "/v1", api_key=key, messages=HELLO)
        parts = list(litellm.completion(model="openai/up", api_base=base + "/v1", api_key=key, messages=HELLO,
                                        stream=True, stream_options={"include_usage": True}))
    assert done.choices[0].message.content == "".join(f"w{i} " for i in range(WORDS))
    assert done.usage.prompt_tokens == PROMPT_TOKENS and done.usage.completion_tokens == WORDS
    assert "".join(p.choices[0].delta.content or "" for p in parts if p.choices) == done.choices[0].message.content
    assert [(e.input_tokens, e.output_tokens) for e in events(db, customer)] == [(PROMPT_TOKENS, WORDS)] * 2
