"""The storefront's chat playground for generative models: a visitor's conversation, answered token by token.

    POST /store/{name}/chat   JSON {"messages": [{"role": "user" | "assistant", "content": "..."}, ...],
                                    "max_tokens": 1..MAX_TOKENS (optional), "temperature": 0..2 (optional)}
                              → text/event-stream, one JSON object per event:
                                    data: {"delta": "..."}                       as the tokens come
                                    data: {"finish_reason": "stop" | "length", "completion_tokens": N}
                                    data: [DONE]
                                a failure after the first token: data: {"error": "..."}, and the stream ends

Visitors hold no key: as with the classifier playground the call is the shop's own demo, unmetered,
and limited instead, per visitor, per address and for all visitors together (`visitors.admit`, the
demo's rpm settings); a reply is at most MAX_TOKENS tokens, a conversation at most MAX_MESSAGES
messages of storefront_demo_max_chars characters each (the oldest leave first when the model's
context is short), and the demo takes at most 1/DEMO_SHARE of a model's running batch, so visitors
never crowd out paying callers. The first event is awaited before the response starts, so an error
before any token (a bad body, a limit, an unknown model, a full engine) is an ordinary HTTP error
with the storefront's one error body: the page shows its line.

`STRINGS` are the playground's words in English and Chinese, as `web.i18n` holds the others.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from modelshop.errors import ModelError, NotFound, Overloaded, ValidationError
from modelshop.llm.engine import Event
from modelshop.llm.sampling import SamplingParams
from modelshop.serve.deps import app_state
from modelshop.serve.generation import GenerativeModel
from modelshop.web.deps import settings
from modelshop.web.i18n import LANGS, language
from modelshop.web.visitors import admit

router = APIRouter(include_in_schema=False)

MAX_TOKENS = 128      # a reply's length at most: a taste of the model, not free service
MAX_MESSAGES = 12     # the conversation the page sends back each turn (six exchanges)
DEMO_SHARE = 4        # the demo's streams of one model at most llm_max_batch // DEMO_SHARE (at least 1)
TEMPERATURE = 0.7     # lively but coherent replies unless the visitor asks for another
ROLES = ("user", "assistant")
SHAPE = '{"messages": [{"role": "user", "content": "..."}]}'

STRINGS: dict[str, tuple[str, str]] = {
    "chat_playground": ("Chat playground", "对话试用"),
    "chat_hint": ("Talk to the model: its reply appears as it is written. Free and limited ({rpm} messages a "
                  "minute, replies up to {tokens} tokens); sign up for a key to call it from your app.",
                  "与模型对话：回复边生成边显示。免费试用，有限额（每分钟 {rpm} 条消息，"
                  "每条回复最多 {tokens} 个词元）；注册获取密钥即可在您的应用中调用。"),
    "chat_placeholder": ("Say hello", "说点什么"),
    "chat_send": ("Send", "发送"),
    "chat_reset": ("New conversation", "新对话"),
    "chat_you": ("You", "您"),
    "chat_failed": ("The reply could not be finished", "回复未能完成"),
    "generative": ("generative", "生成式"),
    "classifier": ("classifier", "分类"),
    "context_length": ("Context", "上下文长度"),
    "tokens": ("tokens", "词元"),
    "local": ("local", "本地"),
    "upstream": ("resold from a provider", "转售自上游提供商"),
    "parameters": ("parameters", "个参数"),
    "token_prices": ("Prices per million tokens", "每百万词元价格"),
    "input_tokens": ("Input", "输入"),
    "output_tokens": ("Output", "输出"),
    "not_charged": ("not charged", "不计费"),
    "no_token_prices": ("No offered plan prices tokens yet; see the pricing table.",
                        "暂无按词元计价的套餐；请见价格表。"),
    "call_it": ("Call it with any OpenAI client", "可用任意 OpenAI 客户端调用"),
}


def strings(request: Request) -> dict[str, str]:
    """The playground's strings in the page's language (`web.i18n` decides which), its limits filled in."""
    index = LANGS.index(language(request))
    values = {"rpm": settings(request).storefront_demo_rpm, "tokens": MAX_TOKENS}
    return {key: (pair[index] or pair[0]).format(**values) for key, pair in STRINGS.items()}


# --- the request -------------------------------------------------------------------------------

async def _body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ValidationError(f"send JSON: {SHAPE}") from None
    if not isinstance(body, dict):
        raise ValidationError(f"send JSON: {SHAPE}")
    return body


def conversation(body: dict, max_chars: int) -> list[dict]:
    """The body's messages, checked: user and assistant turns, the last the visitor's, each within limits."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValidationError(f"messages: send the conversation as a list, the newest last: {SHAPE}")
    if len(messages) > MAX_MESSAGES:
        raise ValidationError(f"messages: the playground takes the last {MAX_MESSAGES} messages of a "
                              f"conversation; {len(messages)} were sent")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValidationError(f'messages[{i}]: send {{"role": "user" | "assistant", "content": "..."}}')
        content = m["content"].strip()
        if not content:
            raise ValidationError(f"messages[{i}] is empty; type a message first")
        if len(content) > max_chars:
            raise ValidationError(f"messages[{i}] has {len(content)} characters; the playground takes at most "
                                  f"{max_chars} a message")
        out.append({"role": m["role"], "content": content})
    if out[-1]["role"] != "user":
        raise ValidationError("the last message must be the visitor's (role user): it is the one answered")
    return out


def _number(body: dict, key: str, low: float, high: float, default, kind=float):
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int if kind is int else (int, float)) \
            or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        raise ValidationError(f"{key}: send {what} from {low:g} to {high:g}, got {value!r}"
                              + ("; sign up for a key for longer replies" if key == "max_tokens" else ""))
    return kind(value)


def fit(model: GenerativeModel, messages: list[dict], max_tokens: int) -> tuple[list[int], int]:
    """The prompt of the longest tail of `messages` that leaves room for the reply in the model's context,
    and the reply's max tokens (less than asked when even the last message alone leaves less room)."""
    context = model.context_length
    start = 0
    while True:
        prompt = model.chat_prompt(messages[start:])
        if len(prompt) + max_tokens <= context:
            return prompt, max_tokens
        later = [i for i in range(start + 1, len(messages)) if messages[i]["role"] == "user"]
        if not later:
            break
        start = later[0]   # drop the oldest exchange; the conversation still opens with the visitor
    room = context - len(prompt)
    if room < 1:
        raise ValidationError(f"the message is {len(prompt)} tokens with the chat template; model \"{model.name}\" "
                              f"reads at most {context}: shorten it")
    return prompt, room


# --- the demo's share of an engine ---------------------------------------------------------------

class DemoStreams:
    """How many playground streams each model is answering, at most `limit` at once (one process's count:
    each replica has its own engines)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running: dict[str, int] = {}

    def take(self, name: str) -> None:
        n = self.running.get(name, 0)
        if n >= self.limit:
            raise Overloaded(f"the playground of {name} is answering {n} visitors, its limit; retry in a few "
                             "seconds or sign up for your own key", retry_after=2.0)
        self.running[name] = n + 1

    def give_back(self, name: str) -> None:
        n = self.running.get(name, 0) - 1
        if n > 0:
            self.running[name] = n
        else:
            self.running.pop(name, None)


def demo_streams(request: Request) -> DemoStreams:
    """The app's count of playground streams, made on first use."""
    state = request.app.state
    streams = getattr(state, "storefront_llm_streams", None)
    if streams is None:
        streams = state.storefront_llm_streams = DemoStreams(max(1, settings(request).llm_max_batch // DEMO_SHARE))
    return streams


# --- the route ---------------------------------------------------------------------------------

@router.post("/store/{name}/chat")
async def chat(request: Request, name: str):
    """One turn of a visitor's conversation with generative model `name`, streamed as server-sent events."""
    conf = settings(request)
    body = await _body(request)
    messages = conversation(body, conf.storefront_demo_max_chars)
    max_tokens = _number(body, "max_tokens", 1, MAX_TOKENS, MAX_TOKENS, int)
    temperature = _number(body, "temperature", 0, 2, TEMPERATURE)
    await admit(request, "chat playground", conf.storefront_demo_rpm, "messages", " or sign up for your own key",
                everyone_rpm=conf.storefront_demo_global_rpm)
    model = await app_state(request).service.generative.get(name)
    if model.source != "local":   # a provider bills the shop for every token: no free playground there
        raise NotFound(f'"{name}" is resold from a provider and has no free playground; sign up for a key to call it')
    prompt, max_tokens = fit(model, messages, max_tokens)
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=0.95)
    streams = demo_streams(request)
    streams.take(name)
    try:
        # the storefront's own id: a visitor's x-request-id must not name another's sequence in the engine
        events = model.host.generate(f"store-{uuid.uuid4().hex}", prompt, params, None)
        first = await anext(events)
        if first.error:
            await events.aclose()
            raise ModelError(f"{model.ref} could not answer: {first.error}; retry")
    except BaseException:
        streams.give_back(name)
        raise
    return Reply(_sse(events, first), cleanup=lambda: _end(events, streams, name),
                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", "x-model": model.ref})


async def _end(events: AsyncIterator[Event], streams: DemoStreams, name: str) -> None:
    streams.give_back(name)
    await events.aclose()   # a sequence still generating leaves the engine's batch


class Reply(StreamingResponse):
    """Server-sent events whose `cleanup` runs once however the response ends: finished, failed, or its
    visitor gone before or during the stream (an unstarted body generator would skip its own `finally`)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, cleanup: Callable[[], Awaitable[None]], **kw) -> None:
        super().__init__(content, **kw)
        self._cleanup = cleanup

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self._cleanup()


async def _sse(events: AsyncIterator[Event], first: Event) -> AsyncIterator[bytes]:
    event = first
    while True:
        if event.error:
            yield _data({"error": f"the model failed: {event.error}; send the message again"})
            return
        if event.text:
            yield _data({"delta": event.text})
        if event.finish_reason is not None:
            break
        event = await anext(events)
    yield _data({"finish_reason": event.finish_reason, "completion_tokens": event.completion_tokens})
    yield b"data: [DONE]\n\n"


def _data(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
