"""Generative models on the storefront: listed beside the classifiers with context length and prices per
million tokens per plan, and a chat playground that streams the tiny random Llama's reply as server-sent
events under the demo's limits, with one clear line for every refused body."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from modelshop.billing import accounts
from modelshop.billing.plans import parse_plan
from modelshop.db import get_database
from modelshop.errors import Overloaded
from modelshop.web.llm_playground import MAX_MESSAGES, MAX_TOKENS, DemoStreams
from tests.support import ACTOR, AUTH, live_server
from tests.web.helpers import build_app

HELLO = [{"role": "user", "content": "Hello! How can"}]
# input priced for every model, output dearer for "tiny" by name: the page shows the named price
TOKEN_PLAN = {"code": "llm", "name": "Tokens", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.0000002"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.0000006"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000001", "models": ["tiny"]}]}


@pytest.fixture
def llm_app_settings(shop_settings, tiny_llama):
    """The web tests' home (the classifier "support") plus the generative model "tiny" (its engine in a
    thread) and TOKEN_PLAN (`build_app` adds the web's plans)."""
    from modelshop.llm.registry import add_local

    add_local("tiny", str(tiny_llama), settings=shop_settings)
    accounts.create_plan(get_database(shop_settings), parse_plan(TOKEN_PLAN), actor=ACTOR)
    return shop_settings.model_copy(update={"llm_processes": False})


@pytest.fixture
def client(llm_app_settings):
    with TestClient(build_app(llm_app_settings)) as c:
        yield c


def events(r) -> list:
    """The data of a server-sent event stream, JSON-decoded ("[DONE]" as is)."""
    out = []
    for block in r.text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def ask(client, messages=HELLO, **body):
    return client.post("/store/tiny/chat", json={"messages": messages, **body})


def one_line(r, status: int, *parts: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_type"} and "\n" not in body["error"], body
    for part in parts:
        assert part in body["error"], body
    return body["error"]


def test_the_index_lists_the_generative_model_beside_the_classifier(client):
    html = client.get("/store").text
    card = re.search(r'<div class="card llm" data-model="tiny">(.*?)</div>', html, re.S).group(1)
    assert "generative" in card and "local" in card and '<span class="context">512</span>' in card
    row = re.search(r'<tr class="token-price" data-plan="llm">(.*?)</tr>', card, re.S).group(1)
    assert re.search(r'class="num input">0\.20 USD<', row) and re.search(r'class="num output">1\.00 USD<', row)
    assert 'data-plan="payg"' not in card          # payg prices requests, not tokens: not in the token prices
    assert 'href="/store/support"' in html and "classifier" in html


def test_the_model_page_shows_prices_and_the_chat_playground(client, tiny_llama):
    html = client.get("/store/tiny").text
    for part in ('id="llm-chat"', 'id="llm-form"', 'id="model-kind">generative<', 'id="context-length">512<',
                 'id="token-prices"', 'id="pricing"', 'id="signup-form"', "/v1/chat/completions"):
        assert part in html, part
    row = re.search(r'<tr class="token-price" data-plan="llm">(.*?)</tr>', html, re.S).group(1)
    assert "0.20 USD" in row and "1.00 USD" in row
    assert 'id="figures"' not in html and 'id="playground-form"' not in html   # the classifier's parts
    assert str(tiny_llama) not in html                                           # no server path
    classifier = client.get("/store/support").text
    assert 'id="playground-form"' in classifier and 'id="llm-chat"' not in classifier


def test_a_refused_signup_comes_back_as_the_generative_page(client):
    token = re.search(r'name="csrf" value="([\w-]+)"', client.get("/store/tiny").text).group(1)
    r = client.post("/store/signup", data={"email": "ann@example.com", "plan": "gold", "model": "tiny", "csrf": token})
    assert r.status_code == 422 and 'id="signup-error"' in r.text and "plan: choose one of" in r.text
    assert 'id="llm-chat"' in r.text and 'value="ann@example.com"' in r.text
    made = client.post("/store/signup", data={"email": "ann@example.com", "plan": "llm", "model": "tiny",
                                              "csrf": token})
    assert made.status_code == 200 and 'id="api-key"' in made.text


def test_the_playground_streams_the_models_reply(client):
    r = ask(client, max_tokens=12, temperature=0)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream") and r.headers["x-model"] == "tiny:1"
    got = events(r)
    assert got[-1] == "[DONE]" and got[-2] == {"finish_reason": "length", "completion_tokens": 12}
    deltas = got[:-2]
    assert len(deltas) > 1 and all(set(e) == {"delta"} for e in deltas)   # in pieces, as the tokens came
    # the reply is the model's own: the API's greedy completion of the same conversation
    api = client.post("/v1/chat/completions", headers=AUTH,
                      json={"model": "tiny", "messages": HELLO, "max_tokens": 12, "temperature": 0}).json()
    assert "".join(e["delta"] for e in deltas) == api["choices"][0]["message"]["content"]


def test_the_playground_is_limited_per_visitor(client):
    codes = [ask(client, max_tokens=2).status_code for _ in range(3)]
    assert codes == [200, 200, 200]           # storefront_demo_rpm = 3 in the web tests
    r = ask(client, max_tokens=2)
    one_line(r, 429, "the chat playground allows 3 messages a minute", "sign up for your own key")
    assert int(r.headers["retry-after"]) >= 1


def test_a_visitor_who_leaves_mid_reply_frees_its_place(llm_app_settings):
    app = build_app(llm_app_settings)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as http:
        with http.stream("POST", "/store/tiny/chat", json={"messages": HELLO}) as r:
            assert r.status_code == 200
            assert next(r.iter_lines()).startswith('data: {"delta":')
        # the cut stream leaves the engine and gives the demo's place back
        streams, host = app.state.storefront_llm_streams, app.state.modelshop.service.generative.served["tiny"].host
        deadline = time.monotonic() + 10
        while (streams.running or host.active) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert streams.running == {} and host.active == 0
        assert http.post("/store/tiny/chat", json={"messages": HELLO, "max_tokens": 2}).status_code == 200


def test_a_long_conversation_keeps_its_newest_messages(client):
    turn = "hello " * 80
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": turn} for i in range(MAX_MESSAGES - 1)]
    r = ask(client, messages, max_tokens=4)   # far more than the 512-token context: the oldest leave
    assert r.status_code == 200 and events(r)[-2]["finish_reason"] == "length"


@pytest.mark.parametrize(("body", "status", "says"), [
    (b"not json", 422, "send JSON"),
    ([], 422, "send JSON"),
    ({"messages": []}, 422, "send the conversation as a list"),
    ({"messages": "hi"}, 422, "send the conversation as a list"),
    ({"messages": [{"role": "system", "content": "x"}]}, 422, 'messages[0]: send {"role": "user"'),
    ({"messages": [{"role": "user", "content": 3}]}, 422, "messages[0]"),
    ({"messages": [{"role": "user", "content": "  "}]}, 422, "messages[0] is empty"),
    ({"messages": [{"role": "user", "content": "x" * 501}]}, 422, "at most 500 a message"),
    ({"messages": [*HELLO, {"role": "assistant", "content": "hi"}]}, 422, "the last message must be the visitor's"),
    ({"messages": HELLO * (MAX_MESSAGES + 1)}, 422, f"the last {MAX_MESSAGES} messages"),
    ({"messages": HELLO, "max_tokens": MAX_TOKENS + 1}, 422, f"max_tokens: send a whole number from 1 to {MAX_TOKENS}"),
    ({"messages": HELLO, "max_tokens": "5"}, 422, "max_tokens"),
    ({"messages": HELLO, "temperature": 3}, 422, "temperature: send a number from 0 to 2"),
    ({"messages": [{"role": "user", "content": "模型" * 200}]}, 422, "reads at most 512: shorten it"),
])
def test_a_bad_body_gets_one_clear_line(client, body, status, says):
    if isinstance(body, bytes):
        r = client.post("/store/tiny/chat", content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.post("/store/tiny/chat", json=body)
    one_line(r, status, says)


def test_only_a_served_generative_model_answers(client):
    one_line(client.post("/store/nope/chat", json={"messages": HELLO}), 404, 'no generative model named "nope"')
    # a classifier has no chat playground
    one_line(client.post("/store/support/chat", json={"messages": HELLO}), 404, 'no generative model named "support"')


def test_the_demo_takes_a_share_of_the_engine():
    streams = DemoStreams(limit=1)
    streams.take("tiny")
    with pytest.raises(Overloaded, match="the playground of tiny is answering 1 visitors, its limit"):
        streams.take("tiny")
    streams.take("other")                     # each model its own share
    streams.give_back("tiny")
    streams.take("tiny")
    assert streams.running == {"tiny": 1, "other": 1}


def test_an_upstream_model_is_listed_as_resold_without_its_url_nor_a_free_playground(llm_app_settings):
    from modelshop.llm.upstream import add_upstream

    add_upstream("resold", "https://user:secret@provider.example/v1", "provider-model-7", key_env="PROVIDER_KEY",
                 cost_input="0.5", cost_output="1.5", settings=llm_app_settings)
    with TestClient(build_app(llm_app_settings)) as c:
        index, page = c.get("/store").text, c.get("/store/resold").text
        chat = c.post("/store/resold/chat", json={"messages": HELLO})
    card = re.search(r'<div class="card llm" data-model="resold">(.*?)</div>', index, re.S).group(1)
    assert "resold from a provider" in card and "#llm-chat" not in card
    assert 'id="llm-chat"' not in page and "resold from a provider" in page
    for html in (index, page):
        assert "provider.example" not in html and "secret" not in html and "PROVIDER_KEY" not in html
    one_line(chat, 404, "no free playground")
