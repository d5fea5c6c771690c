"""/v1/chat/completions, /v1/completions and /v1/models on a tiny random Llama (its engine in a thread):
OpenAI's shapes, streaming, usage counted by the model's tokenizer, errors in OpenAI's shape, backpressure."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi.testclient import TestClient

from modelshop.platform import build_app
from tests.support import AUTH, live_server, make_settings

HELLO = [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "Hello! How can"}]


@pytest.fixture(scope="module")
def llm_settings(tmp_path_factory, tiny_llama):
    from modelshop.llm.registry import add_local

    settings = make_settings(tmp_path_factory.mktemp("llm-home"), llm_processes=False)
    add_local("tiny", str(tiny_llama), settings=settings)
    return settings


@pytest.fixture(scope="module")
def llm(llm_settings):
    with TestClient(build_app(llm_settings)) as c:
        yield c


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def chat(client, **body):
    return client.post("/v1/chat/completions", json={"model": "tiny", "messages": HELLO, "temperature": 0,
                                                      "max_tokens": 12, **body}, headers=AUTH)


def sse(text: str) -> list:
    """The data lines of a server-sent event stream, JSON-decoded (the last one is "[DONE]")."""
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_chat_completion_shape_and_usage_by_the_models_tokenizer(llm, tokenizer):
    r = chat(llm)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    prompt = tokenizer.apply_chat_template(HELLO, add_generation_prompt=True, tokenize=True)
    prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    assert body["usage"] == {"prompt_tokens": len(prompt), "completion_tokens": 12, "total_tokens": len(prompt) + 12}
    assert r.headers["x-input-tokens"] == str(len(prompt)) and r.headers["x-output-tokens"] == "12"
    assert r.headers["x-model"] == "tiny:1" and r.headers["x-request-id"]
    assert chat(llm).json()["choices"][0]["message"]["content"] == choice["message"]["content"]   # greedy


def test_a_stream_is_the_same_completion_in_chunks_then_usage_then_done(llm):
    whole = chat(llm, max_tokens=16).json()
    r = chat(llm, max_tokens=16, stream=True, stream_options={"include_usage": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks, usage = events[:-2], events[-2]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    # without include_usage: no usage chunk
    plain = sse(chat(llm, max_tokens=16, stream=True).text)
    assert all("usage" not in c for c in plain[:-1]) and plain[-2]["choices"][0]["finish_reason"] == "length"


def test_text_completions_plain_and_streamed(llm, tokenizer):
    body = {"model": "tiny", "prompt": "Refunds take", "max_tokens": 10, "temperature": 0}
    r = llm.post("/v1/completions", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "text_completion"
    assert out["usage"]["prompt_tokens"] == len(tokenizer("Refunds take").input_ids)
    events = sse(llm.post("/v1/completions", json={**body, "stream": True}, headers=AUTH).text)
    assert "".join(e["choices"][0]["text"] for e in events[:-1]) == out["choices"][0]["text"]


def test_stop_sequences_end_the_text_before_them(llm):
    text = chat(llm, max_tokens=30).json()["choices"][0]["message"]["content"]
    stop = text[10:13]
    cut = chat(llm, max_tokens=30, stop=[stop]).json()["choices"][0]
    assert cut["message"]["content"] == text[:text.index(stop)] and cut["finish_reason"] == "stop"


def test_json_object_output_parses(llm):
    r = chat(llm, max_tokens=120, response_format={"type": "json_object"})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    content = choice["message"]["content"]
    assert content.lstrip().startswith("{")
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(content), dict)


def test_models_list_generative_and_embedding_models(llm):
    r = llm.get("/v1/models", headers=AUTH)
    assert r.status_code == 200
    data = {m["id"]: m for m in r.json()["data"]}
    assert data["tiny"]["kind"] == "generative" and data["tiny"]["context_length"] == 512
    assert data["tiny"]["source"] == "local" and data["minilm"]["kind"] == "embedding"
    assert llm.get("/v1/models").status_code == 401


@pytest.mark.parametrize("body, status, words", [
    ({"model": "tinyy"}, 404, 'did you mean "tiny"'),
    ({"n": 2}, 400, "n=2 is not supported"),
    ({"max_tokens": 100000}, 400, "context of 512 tokens"),
    ({"messages": []}, 400, "messages"),
    ({"response_format": {"type": "xml"}}, 400, "response_format"),
    ({"tools": [{"type": "function"}]}, 400, "tools are not supported"),
    ({"temperature": 3}, 400, "temperature"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "up to 4"),
])
def test_errors_in_openais_shape(llm, body, status, words):
    r = chat(llm, **body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_a_stream_cannot_carry_an_idempotency_key(llm):
    r = llm.post("/v1/chat/completions", json={"model": "tiny", "messages": HELLO, "stream": True},
                 headers={**AUTH, "Idempotency-Key": "k-1"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json()["error"]["message"]


def test_metrics_count_tokens_and_latencies(llm):
    chat(llm)
    text = llm.get("/metrics", headers=AUTH).text
    for name in ("modelshop_llm_output_tokens_total", "modelshop_llm_time_to_first_token_seconds_count",
                 "modelshop_llm_inter_token_latency_seconds_count", "modelshop_llm_running_sequences",
                 "modelshop_llm_waiting_sequences"):
        assert name in text


def test_past_running_and_waiting_requests_get_429_never_a_queue(tmp_path, tiny_llama):
    from modelshop.llm.registry import add_local

    settings = make_settings(tmp_path / "home", llm_processes=False, llm_max_batch=1, llm_max_waiting=1)
    add_local("tiny", str(tiny_llama), settings=settings)

    async def go(base: str) -> list[int]:
        async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=60) as c:
            body = {"model": "tiny", "messages": HELLO, "temperature": 0, "max_tokens": 200}
            got = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(5)))
            limited = [r for r in got if r.status_code == 429]
            assert limited and all(r.headers["Retry-After"] == "1" for r in limited)
            assert "retry" in limited[0].json()["error"]["message"]
            return sorted(r.status_code for r in got)

    with live_server(build_app(settings)) as base:
        codes = asyncio.run(go(base))
    assert codes.count(200) >= 2 and set(codes) == {200, 429}
