"""`PooledModels`: the server's `Models`, so an app's model call takes the road of `/predict`.

A support-bot message and an FAQ question run on the server's own pool: the served version of the
intent model and the served embedding model, each through `Service.run` (a slot, the model's
tokeniser thread, its batcher, its worker processes), batched together with the `/predict` and
`/v1/embeddings` calls under way. A generated reply takes the road of `/v1/chat/completions`: the
served generative model (its engine's running batch, or an upstream with its fallbacks, through
`generate_with_fallbacks`). The server holds one copy of each model; the apps load none.

Why a blocking facade over async methods, rather than async app functions: the app functions are
plain functions that also read and write the database (a bot turn reads the session, classifies,
asks the FAQ, writes the turn and maybe a ticket), and the CLI and library callers run the very
same functions with `DirectModels`. Making them async would split each into database steps and
model steps, written twice (or run blocking database calls on the event loop). Instead an app
function runs on a thread (`run`), and each of its model calls is handed to the event loop
(`asyncio.run_coroutine_threadsafe`), where it is batched, while that thread waits for the result.

`run` uses threads of its own, not the event loop's default executor: a waiting app thread needs
the loop to make progress (loading a model, re-reading the registry use the default executor), so
app threads filling that executor could wait on each other forever. A model call made on the event
loop's own thread would block the loop it waits for: it is refused (await `aclassify` & co there).
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from modelshop.errors import ModelError, NotFound, ValidationError
from modelshop.inference.base import probabilities
from modelshop.inference.models import Classified, Embedded, Generated, Task, check_task
from modelshop.llm.engine import failure
from modelshop.llm.sampling import SamplingParams
from modelshop.registry import parse_ref
from modelshop.serve.direct_models import chat_messages, check_room, prompt_texts
from modelshop.serve.embeddings import accepts
from modelshop.serve.pool import ServedModel
from modelshop.serve.runners import Seq
from modelshop.serve.service import Service

T = TypeVar("T")
# App calls in flight at once (beyond this they queue): as many as the event loop's default executor
# runs, which ran them before they had threads of their own.
APP_THREADS = min(32, (os.cpu_count() or 1) + 4)


def _seqs(texts: Sequence[str] | list[Seq]) -> list[Seq]:
    if isinstance(texts, str):
        raise ValidationError("pass a list of texts; wrap a single text in a list")
    return [t if isinstance(t, tuple) else (t, None) for t in texts]


class PooledModels:
    """`Models` backed by one server's `Service`: async methods on its event loop, a blocking facade for
    app functions on its app threads."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: ThreadPoolExecutor | None = None

    # --- the app threads ------------------------------------------------------------------------

    def attach(self) -> None:
        """Take the running event loop as the one model calls go to (at start-up, and again by `run`)."""
        self._loop = asyncio.get_running_loop()

    async def run(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        """`fn(*args, **kwargs)` on an app thread, where it may call `classify`, `embed`, `count_tokens`."""
        self.attach()
        if self._threads is None:
            self._threads = ThreadPoolExecutor(APP_THREADS, thread_name_prefix="apps")
        return await self._loop.run_in_executor(self._threads, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown(wait=False, cancel_futures=True)
            self._threads = None

    # --- on the event loop ------------------------------------------------------------------------

    async def classifier(self, model: str) -> ServedModel:
        """The served version of `model`; NAME:VERSION only when that version is the one in production."""
        if not isinstance(model, str) or not model:
            raise ValidationError("name the classifier: NAME or NAME:VERSION")
        name, version = parse_ref(model)
        served = await self.service.pool.get(name)
        if version is not None and served.version != version:
            raise NotFound(f'{model} is not served: this server serves the production version of each model '
                           f'({served.ref}); use "{name}", or promote it with `modelshop models promote {model}`')
        return served

    async def embedder(self, model: str | None = None) -> ServedModel:
        configured = self.service.settings.embedding_model
        if not accepts(configured, model):
            raise ValidationError(f'this server embeds with "{configured}", not "{model}": rebuild what was made '
                                  f'with "{model}", or serve with MODELSHOP_EMBEDDING_MODEL={model}')
        return await self.service.pool.embedder()

    async def aclassify(self, model: str, texts: Sequence[str]) -> Classified:
        served = await self.classifier(model)
        outcome = await self.service.run(served, _seqs(texts), truncate=True)
        return Classified(served.ref, list(served.labels),
                          probabilities(np.stack(outcome.rows), served.multi_label), served.multi_label,
                          outcome.units.tokens)

    async def aembed(self, texts: Sequence[str], model: str | None = None) -> Embedded:
        served = await self.embedder(model)
        outcome = await self.service.run(served, _seqs(texts), truncate=True)
        return Embedded(served.ref, np.stack(outcome.rows).astype(np.float32), outcome.units.tokens)

    async def acount_tokens(self, texts: Sequence[str], model: str | None = None, *, task: Task = "classify") -> int:
        """What `aclassify`/`aembed` would give the model: the same tokeniser thread, the same truncation;
        for "generate", each text's prompt as a one-message chat (what `agenerate` would give it)."""
        check_task(task)
        if task == "generate":
            served = await self.generator(model)
            return sum(served.prepare_chat([{"role": "user", "content": t}]).tokens for t in prompt_texts(texts))
        served = await (self.embedder(model) if task == "embed" else self.classifier(model))
        encoded, _ = await served.prepare(_seqs(texts), True, "right")
        return sum(e.tokens for e in encoded)

    async def generator(self, model: str):
        """The served generative model (local or upstream); NAME:VERSION only for the version in production."""
        if not isinstance(model, str) or not model:
            raise ValidationError("name the generative model: NAME (`modelshop llm list` shows them)")
        name, version = parse_ref(model)
        served = await self.service.generative.get(name)
        if version is not None and served.version != version:
            raise NotFound(f'{model} is not served: this server serves the production version of each model '
                           f'({served.ref}); use "{name}"')
        return served

    async def agenerate(self, model: str, messages: Sequence[dict], *, max_tokens: int,
                        temperature: float = 0.0) -> Generated:
        """The reply of `model` (or of a fallback) to `messages`: the road of a plain /v1/chat/completions."""
        from modelshop.serve.upstream import generate_with_fallbacks

        served = await self.generator(model)
        messages = chat_messages(messages)
        prompts = {}

        def prepared_for(m):
            if m.ref not in prompts:
                prompts[m.ref] = m.prepare_chat(messages)
            return prompts[m.ref]

        check_room(served.name, served.context_length, prepared_for(served).tokens, max_tokens)
        chain = await self.service.generative.chain(served)
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature)
        parts: list[str] = []
        stream = generate_with_fallbacks(chain, f"app-{uuid.uuid4().hex}", prepared_for, params, None, chat=True)
        try:
            async for event in stream:
                if event.error:
                    raise failure(event)
                parts.append(event.text)
                if event.finish_reason is not None:
                    break
            else:
                raise ModelError(f"{served.ref}: the generation ended without finishing; retry")
        finally:
            await stream.aclose()
        answered = event.answered_by or served.ref
        prompt_tokens = event.prompt_tokens or prepared_for(served).tokens
        metrics = self.service.metrics
        metrics.llm_input_tokens.labels(answered).inc(prompt_tokens)
        metrics.llm_output_tokens.labels(answered).inc(event.completion_tokens)
        return Generated("".join(parts), prompt_tokens, event.completion_tokens, answered, event.finish_reason,
                         event.estimated)

    # --- the blocking facade (the `Models` interface), for app functions on an app thread ----------

    def classify(self, model: str, texts: Sequence[str]) -> Classified:
        return self._wait(self.aclassify(model, _seqs(texts)))

    def embed(self, texts: Sequence[str], model: str | None = None) -> Embedded:
        return self._wait(self.aembed(_seqs(texts), model))

    def count_tokens(self, texts: Sequence[str], model: str | None = None, *, task: Task = "classify") -> int:
        texts = prompt_texts(texts) if task == "generate" else _seqs(texts)
        return self._wait(self.acount_tokens(texts, model, task=task))

    def generate(self, model: str, messages: Sequence[dict], *, max_tokens: int,
                 temperature: float = 0.0) -> Generated:
        return self._wait(self.agenerate(model, messages, max_tokens=max_tokens, temperature=temperature))

    def _wait(self, work):
        loop = self._loop
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if loop is None or on_loop or loop.is_closed():
            work.close()
            raise RuntimeError("PooledModels' blocking methods run on an app thread of a started server "
                               "(PooledModels.run); on the event loop, await aclassify / aembed / acount_tokens / "
                               "agenerate")
        return asyncio.run_coroutine_threadsafe(work, loop).result()
