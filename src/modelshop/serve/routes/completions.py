"""`POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`: OpenAI's shapes for generative models.

A call is metered in input and output tokens, counted by the model's own tokenizer (the prompt as the
chat template renders it, the tokens the engine generated) and equal to the `usage` returned:

    admit    prompt tokens + max_tokens are reserved against the key's tpm, the plan's quota and a
             prepaid wallet before any generation (402/429 at once, never after tokens were sent)
    record   what was generated is written to the ledger, and the holds are given back:
             - a plain call: before its reply is sent (Idempotency-Key works as for /predict)
             - a stream: before the finishing chunk, the usage chunk and `[DONE]`; a client that cuts
               the stream is billed for the tokens generated until the cut; a stream the server never
               finished (an engine that died, a crash) is not billed

A stream's first event is awaited before the response starts, so an error that comes before any
token (a bad schema, an engine that cannot take it) is an HTTP error, not a broken stream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from modelshop.errors import ModelError, ValidationError
from modelshop.gate import Units
from modelshop.llm.engine import Event, failure
from modelshop.llm.sampling import SamplingParams
from modelshop.serve.deps import CallerDep, GateDep, PrincipalDep, ServiceDep
from modelshop.serve.metering import MeteredCall, metered
from modelshop.serve.routes import ERRORS
from modelshop.serve.service import Outcome, Service, until_disconnect

router = APIRouter(tags=["generative"])
log = logging.getLogger("modelshop.serve")

MAX_STOPS = 4


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Common(BaseModel):
    # OpenAI clients send fields this server has no use for (user, metadata, store, …): accepted, ignored
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="a generative model's name (GET /v1/models lists them)")
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    n: Annotated[int, Field(ge=1)] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | int | None = None


class ChatCompletionRequest(_Common):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    tools: list[Any] | None = None


class CompletionRequest(_Common):
    prompt: str | list[str]
    echo: bool | None = False
    suffix: str | None = None


@router.post("/v1/chat/completions", responses=ERRORS)
async def chat_completions(body: ChatCompletionRequest, request: Request, service: ServiceDep, caller: CallerDep):
    """A chat completion (the model's chat template over system/user/assistant messages); `stream: true` for SSE."""
    if body.tools:
        raise ValidationError("tools are not supported by this server; send messages only")
    model = await service.generative.get(body.model)
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": _content(m, i)}
                for i, m in enumerate(body.messages)]
    return await _complete(request, service, caller, model, body, lambda m: m.prepare_chat(messages), chat=True,
                           max_tokens=body.max_completion_tokens or body.max_tokens)


@router.post("/v1/completions", responses=ERRORS)
async def completions(body: CompletionRequest, request: Request, service: ServiceDep, caller: CallerDep):
    """A text completion of `prompt`; `stream: true` for SSE."""
    if body.echo or body.suffix:
        raise ValidationError("echo and suffix are not supported; send the prompt alone")
    text = body.prompt
    if isinstance(text, list):
        if len(text) != 1:
            raise ValidationError(f"prompt has {len(text)} strings; send one prompt per request")
        text = text[0]
    if not text:
        raise ValidationError("prompt is empty; send the text to complete")
    model = await service.generative.get(body.model)
    return await _complete(request, service, caller, model, body, lambda m: m.prepare_text(text), chat=False,
                           max_tokens=body.max_tokens)


@router.get("/v1/models", responses=ERRORS)
async def list_models(service: ServiceDep, principal: PrincipalDep, gate: GateDep):
    """The generative models served here (context length, prices per million tokens for your plan) and the
    embedding model."""
    data = []
    for model in await service.generative.models():
        prices = await gate.token_prices(principal, model.name)
        data.append({"id": model.name, "object": "model", "created": model.created, "owned_by": "modelshop",
                     "kind": "generative", "source": model.source, "version": model.version,
                     "context_length": model.context_length,
                     "pricing": None if prices is None else {
                         "currency": prices.currency, "input_per_million": prices.input_per_million,
                         "output_per_million": prices.output_per_million}})
    data.append({"id": service.settings.embedding_model, "object": "model", "created": 0, "owned_by": "modelshop",
                 "kind": "embedding", "source": "local", "pricing": None})
    return {"object": "list", "data": data}


# --- one completion -----------------------------------------------------------------------------

def _content(message: ChatMessage, i: int) -> str:
    if message.content is None:
        raise ValidationError(f"messages[{i}].content is missing; send the message's text")
    if isinstance(message.content, str):
        return message.content
    return "".join(part.text for part in message.content)


def _params(body: _Common, model, prompt_tokens: int, max_tokens: int | None, settings) -> SamplingParams:
    if body.n not in (None, 1):
        raise ValidationError(f"n={body.n} is not supported: this server returns one choice; send {body.n} requests")
    if body.logprobs:
        raise ValidationError("logprobs are not supported by this server; leave logprobs out")
    context = model.context_length   # None: an upstream whose context is not registered (it checks)
    room = context - prompt_tokens if context else settings.llm_max_tokens
    if room < 1:
        raise ValidationError(f"the prompt has {prompt_tokens} tokens; model \"{model.name}\" reads at most "
                              f"{context} (its context length): shorten it")
    if max_tokens is None:   # reserved and billed against: an upstream is asked for no more than this
        max_tokens = min(settings.llm_max_tokens, room)
    elif context and max_tokens > room:
        raise ValidationError(f"the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: more than "
                              f"model \"{model.name}\"'s context of {context} tokens; ask for at most {room}")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    if len(stop) > MAX_STOPS or any(not s for s in stop):
        raise ValidationError(f"stop takes up to {MAX_STOPS} non-empty strings")
    return SamplingParams(max_tokens=max_tokens, temperature=1.0 if body.temperature is None else body.temperature,
                          top_p=1.0 if body.top_p is None else body.top_p, seed=body.seed, stop=stop,
                          presence_penalty=body.presence_penalty or 0.0,
                          frequency_penalty=body.frequency_penalty or 0.0)


async def _complete(request: Request, service: Service, caller, model, body: _Common, prepare, *, chat: bool,
                    max_tokens: int | None):
    """One completion by `model` (local or upstream, with its fallbacks); `prepare(m)` gives the prompt as
    model `m` reads it."""
    from modelshop.llm.constrain import parse_response_format

    prepared = prepare(model)
    params = _params(body, model, prepared.tokens, max_tokens, service.settings)
    response_format = parse_response_format(body.response_format)
    reserve = Units(requests=1, tokens=prepared.tokens + params.max_tokens, input_tokens=prepared.tokens,
                    output_tokens=params.max_tokens)
    chain = await service.generative.chain(model)
    cache = {model.ref: prepared}

    def prepared_for(m):
        if m.ref not in cache:
            cache[m.ref] = prepare(m)
        return cache[m.ref]

    shape = _Shape(caller.request_id, model, chat)
    prompt = (chain, prepared_for, prepared)
    if body.stream:
        if caller.idempotency_key is not None:
            raise ValidationError("Idempotency-Key applies to calls without stream; a stream cannot be replayed: "
                                  "drop the header or set stream to false")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await _stream(request, service, caller, model, prompt, params, response_format, reserve, shape,
                             include_usage, chat)
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        await m.admit(model.ref, reserve)
        run = _Run(service, model, caller.request_id, *prompt, chat=chat)
        text, finish = await until_disconnect(request, run.all(params, response_format))
        shape.answered(run)
        payload = shape.whole(text, finish, run.usage())
        return await m.reply(run.answered_by, payload, run.outcome(), extra=run.extra(), headers=run.headers())


async def _stream(request, service, caller, model, prompt, params, response_format, reserve, shape,
                  include_usage: bool, chat: bool):
    stack = contextlib.AsyncExitStack()
    await stack.__aenter__()
    try:
        m = await stack.enter_async_context(metered(request, caller))
        await m.admit(model.ref, reserve)
        run = _Run(service, model, caller.request_id, *prompt, chat=chat)
        events = run.events(params, response_format)
        first = await anext(events)
        if first.error:
            raise failure(first)
    except BaseException as e:
        await stack.__aexit__(type(e), e, e.__traceback__)
        raise
    shape.answered(run)
    stream = _Stream(stack, m, run, events, first, shape, include_usage)
    return MeteredStream(stream, media_type="text/event-stream",
                         headers={"x-request-id": caller.request_id, "x-model": run.answered_by,
                                  "x-queue-time": f"{run.first_token_s * 1000:.2f}", "cache-control": "no-cache",
                                  **run.headers()})


class _Stream:
    """One stream's chunks and its ending: the usage recorded before the finishing chunk (see the module
    docstring), and, however the response ends, the sequence ended and the meter left exactly once."""

    def __init__(self, stack: contextlib.AsyncExitStack, m: MeteredCall, run: _Run, events: AsyncIterator[Event],
                 first: Event, shape: _Shape, include_usage: bool) -> None:
        self.stack, self.m, self.run, self.events, self.first = stack, m, run, events, first
        self.shape, self.include_usage = shape, include_usage
        self.recorded = self.failed = self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        shape, usage = self.shape, self.include_usage
        try:
            yield _data(shape.chunk({"role": "assistant", "content": ""} if shape.chat else "", None, usage))
            event = self.first
            while True:
                if event.error:
                    self.failed = True
                    yield _data({"error": {"message": failure(event).message, "type": "server_error",
                                           "param": None, "code": "model"}})
                    return
                if event.text:
                    yield _data(shape.chunk({"content": event.text} if shape.chat else event.text, None, usage))
                if event.finish_reason is not None:
                    break
                event = await anext(self.events)
            await self.m.record_stream(model_ref=self.run.answered_by, outcome=self.run.outcome(),
                                       extra=self.run.extra())
            self.recorded = True
            yield _data(shape.chunk({} if shape.chat else "", event.finish_reason, usage))
            if usage:
                yield _data(shape.usage_chunk(self.run.usage()))
            yield b"data: [DONE]\n\n"
        finally:
            await self.close()

    async def close(self) -> None:
        """End the sequence; bill a stream its client cut for what was generated; leave the meter."""
        if self.closed:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            await self.events.aclose()
            if not self.recorded and not self.failed and self.run.completion_tokens > 0:
                # the client cut the stream: it is billed for what was generated until then
                try:
                    await self.m.record_stream(model_ref=self.run.answered_by, outcome=self.run.outcome(),
                                               extra=self.run.extra())
                    self.recorded = True
                except Exception:
                    log.exception("usage of the cut stream %s not recorded", self.run.rid)
            if self.recorded:
                await self.stack.__aexit__(None, None, None)
            else:   # never finished: not billed, what was admitted goes back
                gone = ModelError("the stream ended before it finished")
                await self.stack.__aexit__(ModelError, gone, None)


class MeteredStream(StreamingResponse):
    """A stream that is closed (see `_Stream.close`) however the response ends: finished, its client gone
    mid-way, or gone before the first chunk (when the body generator never started to run a `finally`)."""

    def __init__(self, stream: _Stream, **kwargs) -> None:
        super().__init__(stream.chunks(), **kwargs)
        self.stream = stream

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()
                await self.stream.close()


class _Run:
    """One completion on a chain of models (the asked one, then its fallbacks): its events, timings, who
    answered, and the usage they add up to (an upstream's own when it sent it)."""

    def __init__(self, service: Service, model, request_id: str, chain: list, prepared_for, prepared, *,
                 chat: bool) -> None:
        self.service, self.model, self.rid, self.chain = service, model, request_id, chain
        self.prepared_for, self.chat = prepared_for, chat
        self.prompt_tokens = prepared.tokens
        self.completion_tokens = 0
        self.estimated = False
        self.answered_by = model.ref
        self.answered_name = model.name
        self.source = model.source
        self.started = time.perf_counter()
        self.first_token_s = 0.0
        self._last = self.started

    async def events(self, params: SamplingParams, response_format: dict | None) -> AsyncIterator[Event]:
        from modelshop.serve.upstream import generate_with_fallbacks

        metrics = self.service.metrics
        stream = generate_with_fallbacks(self.chain, self.rid, self.prepared_for, params, response_format,
                                         chat=self.chat)
        counted_input = False
        try:
            async for event in stream:
                now = time.perf_counter()
                label = event.answered_by or self.answered_by
                if not counted_input:
                    self.answered_by, counted_input = label, True
                    answering = next((m for m in self.chain if m.ref == label), self.model)
                    self.answered_name, self.source = answering.name, answering.source
                    self.prompt_tokens = self.prepared_for(answering).tokens
                if event.tokens:
                    if self.completion_tokens == 0:
                        self.first_token_s = now - self.started
                        metrics.llm_ttft.labels(label).observe(self.first_token_s)
                    else:
                        metrics.llm_itl.labels(label).observe(now - self._last)
                    metrics.llm_output_tokens.labels(label).inc(event.tokens)
                    self._last = now
                if event.finish_reason is not None and not event.error:
                    # the finishing event carries the final usage: the provider's, or counted here
                    self.completion_tokens = event.completion_tokens
                    self.prompt_tokens = event.prompt_tokens or self.prompt_tokens
                    self.estimated = event.estimated
                    metrics.llm_input_tokens.labels(label).inc(self.prompt_tokens)
                else:
                    self.completion_tokens = max(self.completion_tokens, event.completion_tokens)
                    self.estimated = self.estimated or event.estimated
                yield event
        finally:
            await stream.aclose()

    async def all(self, params: SamplingParams, response_format: dict | None) -> tuple[str, str]:
        parts = []
        async for event in self.events(params, response_format):
            if event.error:
                raise failure(event)
            parts.append(event.text)
            if event.finish_reason is not None:
                return "".join(parts), event.finish_reason
        raise ModelError(f"{self.model.ref}: the generation ended without finishing; retry")

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def outcome(self) -> Outcome:
        units = Units(requests=1, tokens=self.prompt_tokens + self.completion_tokens, input_tokens=self.prompt_tokens,
                      output_tokens=self.completion_tokens)
        return Outcome([], units, self.first_token_s, time.perf_counter() - self.started, 0.0, 0)

    def extra(self) -> dict:
        return {"estimated": True} if self.estimated else {}

    def headers(self) -> dict[str, str]:
        """x-modelshop-upstream names the model that answered, when an upstream (or a fallback) did."""
        if self.source == "upstream" or self.answered_by != self.model.ref:
            return {"x-modelshop-upstream": self.answered_name}
        return {}


class _Shape:
    """OpenAI's objects for chat or text completions."""

    def __init__(self, request_id: str, model, chat: bool) -> None:
        self.chat, self.name, self.ref = chat, model.name, model.ref
        self.id = ("chatcmpl-" if chat else "cmpl-") + request_id
        self.created = int(time.time())

    def answered(self, run: _Run) -> None:
        """The objects name the model that answered (a fallback, when the asked one failed)."""
        self.name, self.ref = run.answered_name, run.answered_by

    def _head(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.name,
                "system_fingerprint": self.ref}

    def whole(self, text: str, finish: str, usage: dict) -> dict:
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                      "logprobs": None}
            return {**self._head("chat.completion"), "choices": [choice], "usage": usage}
        return {**self._head("text_completion"), "usage": usage,
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}

    def chunk(self, delta, finish: str | None, include_usage: bool) -> dict:
        if self.chat:
            out = {**self._head("chat.completion.chunk"),
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
        else:
            out = {**self._head("text_completion"),
                   "choices": [{"index": 0, "text": delta, "finish_reason": finish, "logprobs": None}]}
        if include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, usage: dict) -> dict:
        return {**self._head("chat.completion.chunk" if self.chat else "text_completion"), "choices": [],
                "usage": usage}


def _data(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


__all__ = ["router"]
