"""The real `openai` package and langchain-openai's ChatOpenAI against a live server (uvicorn) on the tiny Llama."""

from __future__ import annotations

import pytest

from modelshop.platform import build_app
from tests.support import ADMIN_KEY, live_server, make_settings

HELLO = [{"role": "user", "content": "Hello! How can"}]


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, tiny_llama):
    from modelshop.llm.registry import add_local

    settings = make_settings(tmp_path_factory.mktemp("llm-clients"), llm_processes=False)
    add_local("tiny", str(tiny_llama), settings=settings)
    with live_server(build_app(settings)) as base:
        yield base + "/v1"


def test_openai_plain_and_streamed_with_usage(base_url):
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=ADMIN_KEY, max_retries=0)
    done = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=10, temperature=0)
    assert done.choices[0].finish_reason == "length" and done.usage.completion_tokens == 10
    stream = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=10, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == done.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == done.usage.total_tokens
    completion = client.completions.create(model="tiny", prompt="Refunds take", max_tokens=5, temperature=0)
    assert completion.usage.completion_tokens == 5
    assert "tiny" in [m.id for m in client.models.list()]


def test_openai_raises_the_matching_exception_with_our_message(base_url):
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=ADMIN_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match='did you mean "tiny"'):
        client.chat.completions.create(model="tinny", messages=HELLO)
    with pytest.raises(openai.BadRequestError, match="n=3 is not supported"):
        client.chat.completions.create(model="tiny", messages=HELLO, n=3)
    with pytest.raises(openai.AuthenticationError, match="invalid API key"):
        openai.OpenAI(base_url=base_url, api_key="nope", max_retries=0).models.list()


def test_langchain_chat_openai_invoke_stream_and_usage_metadata(base_url):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tiny", base_url=base_url, api_key=ADMIN_KEY, max_tokens=8, temperature=0,
                     max_retries=0, stream_usage=True)
    message = llm.invoke("Hello! How can")
    assert message.usage_metadata["output_tokens"] == 8
    assert message.usage_metadata["total_tokens"] == message.usage_metadata["input_tokens"] + 8
    parts = list(llm.stream("Hello! How can"))
    assert "".join(p.content for p in parts) == message.content
    usage = [p.usage_metadata for p in parts if p.usage_metadata]
    assert usage and usage[-1]["output_tokens"] == 8
