"""The gateway's side of upstream models: relay a completion to an OpenAI-compatible provider, chunk by
chunk, with fallbacks, a circuit breaker and usage you can trust.

    try the model, then its fallbacks in order, skipping any that is cooling down, on
        connection errors, timeouts, 429 (its Retry-After is how long it cools down) and 5xx —
        only before the first event reaches the caller, never after
    an upstream that failed BREAKER_FAILURES times in a row cools down for BREAKER_COOLDOWN_S: requests
        go straight to its fallback meanwhile
    every failing → UpstreamFailed (502) or UpstreamTimeout (504) naming which upstream failed how,
        never a key or a URL's credentials

Usage: `stream_options.include_usage` is always asked of the upstream; its usage is the truth and is
read from either final-chunk shape (usage on the last `choices` chunk, or a chunk of its own with empty
`choices`), taken once, never added. An upstream that sends none has its tokens counted here with a
local tokenizer and the events say `estimated`. The sequence's finishing event waits for the end of
the upstream's stream, so it always carries the final usage.

The customer's key never leaves this server: the request to the provider is built afresh, with the
provider's key read from its environment variable at call time.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from modelshop.errors import UpstreamFailed, UpstreamTimeout, ValidationError
from modelshop.llm.engine import FINISH_ERROR, Event
from modelshop.llm.sampling import SamplingParams
from modelshop.llm.upstream import provider_key

log = logging.getLogger("modelshop.serve")

BREAKER_FAILURES = 3        # failures in a row that cool an upstream down
BREAKER_COOLDOWN_S = 30.0   # how long, when its answers gave no Retry-After
MAX_RETRY_AFTER_S = 300.0
CHARS_PER_TOKEN = 4         # the estimate when no tokenizer is named


@dataclass
class Prepared:
    """A request's prompt as the gateway admits it: its token count, and what the model reads."""

    tokens: int
    ids: list[int] | None = None        # a local model's prompt
    messages: list[dict] | None = None  # an upstream chat's messages
    text: str | None = None             # an upstream text completion's prompt
    estimated: bool = False


class _Failure(Exception):
    """One upstream attempt that failed before its first event (the next in the chain is tried)."""

    def __init__(self, why: str, *, timeout: bool = False, retry_after: float | None = None,
                 fall_back: bool = True, status: int = 502) -> None:
        super().__init__(why)
        self.why, self.timeout, self.retry_after = why, timeout, retry_after
        self.fall_back, self.status = fall_back, status


@dataclass
class Breaker:
    failures: int = 0
    open_until: float = 0.0

    def available(self, now: float) -> bool:
        return now >= self.open_until

    def failed(self, now: float, retry_after: float | None) -> None:
        self.failures += 1
        if retry_after is not None:
            self.open_until = now + min(retry_after, MAX_RETRY_AFTER_S)
        elif self.failures >= BREAKER_FAILURES:
            self.open_until = now + BREAKER_COOLDOWN_S

    def succeeded(self) -> None:
        self.failures, self.open_until = 0, 0.0


class Counter:
    """Counts tokens for an upstream model: with a local tokenizer, else ~4 characters a token."""

    def __init__(self, tokenizer: Any = None) -> None:
        self.tokenizer = tokenizer

    def text(self, text: str) -> int:
        if not text:
            return 0
        if self.tokenizer is None:
            return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def chat(self, messages: list[dict]) -> int:
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            from modelshop.serve.generation import chat_ids

            return len(chat_ids(self.tokenizer, messages))
        return sum(self.text(m["content"]) + 4 for m in messages) + 2   # OpenAI's per-message overhead


@dataclass
class UpstreamModel:
    """The production version of an upstream model, as the gateway serves it."""

    name: str
    version: int
    version_id: int
    meta: dict
    counter: Counter
    http: Any                              # () -> the server's aiohttp.ClientSession (made in its event loop)
    breaker: Breaker = field(default_factory=Breaker)
    created: int = field(default_factory=lambda: int(time.time()))
    source = "upstream"

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def context_length(self) -> int | None:
        return self.meta.get("context_length")

    @property
    def fallbacks(self) -> list[str]:
        return list(self.meta.get("fallbacks") or [])

    def prepare_chat(self, messages: list[dict]) -> Prepared:
        return Prepared(self.counter.chat(messages), messages=messages, estimated=self.counter.tokenizer is None)

    def prepare_text(self, prompt: str) -> Prepared:
        return Prepared(self.counter.text(prompt), text=prompt, estimated=self.counter.tokenizer is None)

    async def generate(self, rid: str, prepared: Prepared, params: SamplingParams, response_format: dict | None,
                       *, chat: bool) -> AsyncIterator[Event]:
        """The events of one completion by this upstream; raises `_Failure` before the first event."""
        body: dict[str, Any] = {"model": self.meta["upstream_model"], "stream": True,
                                "stream_options": {"include_usage": True}, "max_tokens": params.max_tokens,
                                "temperature": params.temperature, "top_p": params.top_p}
        if chat:
            body["messages"] = prepared.messages
        else:
            body["prompt"] = prepared.text
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.presence_penalty:
            body["presence_penalty"] = params.presence_penalty
        if params.frequency_penalty:
            body["frequency_penalty"] = params.frequency_penalty
        if response_format is not None:
            body["response_format"] = response_format
        headers = {"Accept": "text/event-stream"}
        key = provider_key(self.meta)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.meta["base_url"] + ("/chat/completions" if chat else "/completions")
        timeout = float(self.meta.get("timeout_s") or 60.0)
        # the timeout bounds the wait for the answer to start and each wait for a next chunk
        limits = aiohttp.ClientTimeout(total=None, sock_connect=min(timeout, 10.0), sock_read=timeout)
        try:
            response = await self.http().post(url, json=body, headers=headers, timeout=limits)
        except TimeoutError:
            raise _Failure(f"timed out after {timeout:g} s", timeout=True) from None
        except aiohttp.ClientError as e:
            raise _Failure(f"could not be reached ({type(e).__name__})") from None
        try:
            if response.status != 200:
                raise await _refusal(response)
            async for event in self._relay(rid, prepared, response, chat, timeout):
                yield event
        finally:
            response.release()   # read to its end: the connection goes back to the pool; cut: it is closed

    async def _relay(self, rid: str, prepared: Prepared, response: aiohttp.ClientResponse, chat: bool,
                     timeout: float) -> AsyncIterator[Event]:
        usage: dict | None = None
        finish: str | None = None
        generated = 0          # tokens counted here, for an upstream that reports none
        started = done = False
        while not done:
            try:
                raw = await response.content.readline()
            except TimeoutError:
                if not started:
                    raise _Failure(f"timed out after {timeout:g} s", timeout=True) from None
                yield self._broken(rid, prepared, generated, f"the upstream stalled for {timeout:g} s")
                return
            except aiohttp.ClientError as e:
                if not started:
                    raise _Failure(f"broke off before answering ({type(e).__name__})") from None
                yield self._broken(rid, prepared, generated, "the upstream broke off mid-stream")
                return
            if not raw:
                if finish is None and usage is None:   # the body ended before the stream said it was done
                    if not started:
                        raise _Failure("broke off before answering")
                    yield self._broken(rid, prepared, generated, "the upstream broke off mid-stream")
                    return
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                done = True
                await response.read()    # the rest of the body (none, usually): the connection can be reused
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                continue
            if chunk.get("usage"):
                usage = chunk["usage"]          # either shape; the last one seen is the total, never added
            for choice in chunk.get("choices") or []:
                if choice.get("index", 0) != 0:
                    continue
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
                if text:
                    n = self.counter.text(text)
                    generated += n
                    started = True
                    yield Event(rid, text, n, None, prompt_tokens=prepared.tokens, completion_tokens=generated,
                                answered_by=self.ref, estimated=True)
        if finish is None and not started and usage is None:
            raise _Failure("answered with an empty stream")
        if usage is not None:
            yield Event(rid, "", 0, finish or "stop", prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0), answered_by=self.ref)
        else:
            yield Event(rid, "", 0, finish or "stop", prompt_tokens=prepared.tokens, completion_tokens=generated,
                        answered_by=self.ref, estimated=True)

    def _broken(self, rid: str, prepared: Prepared, generated: int, why: str) -> Event:
        return Event(rid, "", 0, FINISH_ERROR, prompt_tokens=prepared.tokens, completion_tokens=generated,
                     error=f"UpstreamFailed: {self.name}: {why}", answered_by=self.ref, estimated=True)


async def _refusal(response: aiohttp.ClientResponse) -> _Failure:
    """Why an upstream answered other than 200, as a failure that says whether to fall back."""
    status = response.status
    try:
        body = json.loads(await response.read())
        detail = body.get("error", {}).get("message") if isinstance(body.get("error"), dict) else body.get("error")
    except (TimeoutError, ValueError, AttributeError, aiohttp.ClientError):
        detail = None
    detail = f": {str(detail)[:200]}" if detail else ""
    if status == 429:
        retry = _retry_after(response.headers.get("retry-after"))
        wait = f", retry after {retry:g} s" if retry is not None else ""
        return _Failure(f"rate limited (HTTP 429{wait})", retry_after=retry)
    if status >= 500:
        retry = _retry_after(response.headers.get("retry-after"))
        return _Failure(f"failed (HTTP {status}{detail})", retry_after=retry)
    if status in (401, 403):
        return _Failure(f"refused the gateway's provider key (HTTP {status}); check the model's key variable",
                        fall_back=False)
    return _Failure(f"refused the request (HTTP {status}{detail})", fall_back=False, status=400)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None   # an HTTP date: not worth parsing for a cooldown


async def generate_with_fallbacks(chain: list, rid: str, prepared_for, params: SamplingParams,
                                  response_format: dict | None, *, chat: bool) -> AsyncIterator[Event]:
    """Events of the first model of `chain` that answers (see the module docstring).

    `chain` holds served models (upstream or local); `prepared_for(model)` gives the prompt as that model
    reads it. Local models are tried like upstream ones; their own errors (429 when full) pass through
    as failures of that link.
    """
    from modelshop.errors import ModelshopError

    failures: list[str] = []
    local_errors: list[ModelshopError] = []
    timed_out = False
    now = time.monotonic()
    for model in chain:
        breaker: Breaker | None = getattr(model, "breaker", None)
        if breaker is not None and not breaker.available(now):
            failures.append(f"{model.name}: cooling down after failures ({breaker.open_until - now:.0f} s left)")
            continue
        stream = model.generate(rid, prepared_for(model), params, response_format, chat=chat)
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            failures.append(f"{model.name}: answered nothing")
            continue
        except _Failure as f:
            if breaker is not None:
                breaker.failed(time.monotonic(), f.retry_after)
            log.warning("upstream %s failed: %s", model.name, f.why)
            if not f.fall_back:
                await stream.aclose()
                if f.status == 400:
                    raise ValidationError(f"{model.name} {f.why}") from None
                raise UpstreamFailed(f"{model.name} {f.why}") from None
            failures.append(f"{model.name}: {f.why}")
            timed_out = f.timeout
            continue
        except ModelshopError as e:   # a local model in the chain (busy, failed): try the next
            failures.append(f"{model.name}: {e.message}")
            local_errors.append(e)
            continue
        if breaker is not None:
            breaker.succeeded()
        try:
            yield first
            async for event in stream:
                yield event
        finally:
            await stream.aclose()
        return
    if len(local_errors) == len(chain):   # only local models, all refused (e.g. busy: 429): say so as it is
        raise local_errors[-1]
    error = UpstreamTimeout if timed_out else UpstreamFailed
    raise error("every upstream failed: " + "; ".join(failures))
