"""`DirectModels`: the `Models` of a process without a server (the CLI, scripts, library calls).

Each registered version and each embedding model is loaded once per process, on first use, and
kept (a few of each: a CLI command or a notebook uses one or two), as `apps/support.py` and
`apps/faq.py` did before each with a cache of its own. Inside a server nothing calls this: the
server's apps get its `PooledModels`, so it holds one copy of each model. `unload()` drops what
was loaded, for a process that builds knowledge bases and then serves (`modelshop demo`).

A local generative version runs here on the engine the server runs (`modelshop.llm.engine`), in
this process, one reply at a time; its prompt is rendered by the same `GenerativeModel.prepare_chat`
the server uses, so a prompt counts the same tokens on both roads. An upstream model is not called
from here: its fallbacks, circuit breaker and provider key live in the server's gateway, so asking
one names the fix (serve it, and send the message through the server) instead.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from modelshop.errors import ModelError, ValidationError
from modelshop.inference.models import Classified, Embedded, Generated, Task, check_task
from modelshop.llm.engine import failure
from modelshop.settings import Settings, get_settings


@functools.lru_cache(maxsize=8)
def _predictor(folder: str, ref: str, files_sha256: tuple[tuple[str, str], ...] | None, device: str,
               threads: int | None):
    from modelshop.inference import load_predictor

    registered = SimpleNamespace(ref=ref, files_sha256=dict(files_sha256) if files_sha256 is not None else None)
    return load_predictor(Path(folder), device=device, threads=threads, registered=registered)


@dataclass
class _LocalLM:
    """A generative version loaded here: its prompt renderer (the server's), its engine, and a lock (the
    engine is driven by one caller at a time)."""

    model: Any          # a modelshop.serve.generation.GenerativeModel without an engine host
    engine: Any         # a modelshop.llm.engine.Engine
    lock: threading.Lock


@functools.lru_cache(maxsize=2)
def _generator(folder: str, name: str, version: int, version_id: int, threads: int | None) -> _LocalLM:
    from modelshop.llm.engine import Engine
    from modelshop.llm.registry import load_causal_lm
    from modelshop.serve.generation import GenerativeModel

    model, tokenizer, meta = load_causal_lm(Path(folder), threads=threads)
    engine = Engine(model, tokenizer, eos_token_ids=meta["eos_token_ids"], context_length=meta["context_length"],
                    max_batch=1)
    return _LocalLM(GenerativeModel(name, version, version_id, tokenizer, meta, host=None), engine,
                    threading.Lock())


def unload() -> None:
    """Forget every model loaded here (the memory goes back once nothing else holds them)."""
    from modelshop.serve.embeddings import load_embedder

    _predictor.cache_clear()
    _generator.cache_clear()
    load_embedder.cache_clear()


# --- shared with PooledModels: a chat's checks, the same on both roads ----------------------------

def prompt_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValidationError("pass a list of texts; wrap a single text in a list")
    return list(texts)


def chat_messages(messages: Sequence[dict]) -> list[dict]:
    """`messages` as a chat template reads them: [{"role", "content"}], roles and texts checked."""
    if isinstance(messages, (str, dict)) or not messages:
        raise ValidationError('pass the chat as a list of messages: [{"role": "user", "content": "..."}]')
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise ValidationError(f'messages[{i}] must be {{"role": "system" | "user" | "assistant", '
                                  f'"content": "text"}}')
        out.append({"role": m["role"], "content": m["content"]})
    return out


def check_room(name: str, context_length: int | None, prompt_tokens: int, max_tokens: int) -> None:
    """Refuse a prompt and reply that would not fit the model's context (None: an upstream that checks)."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValidationError(f"max_tokens must be a whole number of at least 1, got {max_tokens!r}")
    if context_length and prompt_tokens + max_tokens > context_length:
        raise ValidationError(f'the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: more than '
                              f'model "{name}"\'s context of {context_length} tokens; shorten the prompt')


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise ValidationError("pass a list of texts; wrap a single text in a list")
    return list(texts)


class DirectModels:
    """`Models` in this process: registered versions through `load_predictor`, embeddings through `Embedder`."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()

    def classifier(self, model: str):
        """(predictor, NAME:VERSION) of `model`: NAME is its production version, else its latest."""
        from modelshop.registry import Registry

        registry = Registry.from_settings(self.settings)
        row = registry.get(model)  # NotFound with "did you mean"
        hashes = tuple(sorted(row.files_sha256.items())) if row.files_sha256 is not None else None
        return _predictor(str(registry.path(row)), row.ref, hashes, self.settings.device,
                          self.settings.torch_threads), row.ref

    def embedder(self, model: str | None = None):
        from modelshop.serve.embeddings import load_embedder

        return load_embedder(model or self.settings.embedding_model, self.settings.torch_threads)

    def classify(self, model: str, texts: Sequence[str]) -> Classified:
        texts = _texts(texts)
        predictor, ref = self.classifier(model)
        return Classified(ref, list(predictor.labels), predictor.predict_proba(texts), predictor.multi_label,
                          _seen(predictor, texts))

    def embed(self, texts: Sequence[str], model: str | None = None) -> Embedded:
        from modelshop.serve.embeddings import embedding_ref

        texts = _texts(texts)
        embedder = self.embedder(model)
        return Embedded(embedding_ref(embedder.name), embedder.embed(texts), sum(embedder.count_tokens(texts)))

    def generator(self, model: str) -> _LocalLM:
        """The local generative version `model` names (its production version, else its latest), loaded here."""
        from modelshop.llm.registry import is_generative
        from modelshop.registry import Registry

        if not isinstance(model, str) or not model:
            raise ValidationError("name the generative model: NAME (`modelshop llm list` shows them)")
        registry = Registry.from_settings(self.settings)
        row = registry.get(model)  # NotFound with "did you mean"
        if row.family == "upstream":
            raise ValidationError(f'"{row.name}" is an upstream model: it is called through the server\'s gateway '
                                  "(fallbacks, provider key), not from this process; start `modelshop serve` and "
                                  f"send the message to POST /apps/support/BOT/message")
        if not is_generative(row):
            raise ValidationError(f'"{row.ref}" is a classifier, not a generative model; '
                                  "`modelshop llm list` shows the generative ones")
        return _generator(str(registry.path(row)), row.name, row.version, row.id, self.settings.torch_threads)

    def generate(self, model: str, messages: Sequence[dict], *, max_tokens: int,
                 temperature: float = 0.0) -> Generated:
        from modelshop.llm.sampling import SamplingParams

        local = self.generator(model)
        served = local.model
        prepared = served.prepare_chat(chat_messages(messages))
        check_room(served.name, served.context_length, prepared.tokens, max_tokens)
        rid, parts = uuid.uuid4().hex, []
        with local.lock:
            engine = local.engine
            engine.add(rid, prepared.ids, SamplingParams(max_tokens=max_tokens, temperature=temperature))
            try:
                while engine.busy:
                    for event in engine.step():
                        if event.error:
                            raise failure(event)
                        parts.append(event.text)
                        if event.finish_reason is not None:
                            return Generated("".join(parts), prepared.tokens, event.completion_tokens, served.ref,
                                             event.finish_reason)
            except BaseException:
                engine.fail_all("the caller stopped")    # leave the engine empty for the next reply
                raise
        raise ModelError(f"{served.ref}: the generation ended without finishing; retry")

    def count_tokens(self, texts: Sequence[str], model: str | None = None, *, task: Task = "classify") -> int:
        check_task(task)
        if task == "generate":
            served = self.generator(model).model
            return sum(served.prepare_chat([{"role": "user", "content": t}]).tokens for t in prompt_texts(texts))
        texts = _texts(texts)
        if task == "embed":
            return sum(self.embedder(model).count_tokens(texts))
        if model is None:
            raise ValidationError("count_tokens(task='classify') needs the classifier's NAME or NAME:VERSION")
        return _seen(self.classifier(model)[0], texts)


def _seen(predictor, texts: list[str]) -> int:
    """Tokens a predictor reads: a transformer truncates at its max_length, tfidf reads every word."""
    counts = predictor.count_tokens(texts)
    if predictor.family == "tfidf":
        return sum(counts)
    return sum(min(n, predictor.max_length) for n in counts)
