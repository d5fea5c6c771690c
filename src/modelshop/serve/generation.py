"""Generative models as a server serves them: one continuous-batching engine per production version.

Each `GenerativeModel` owns an `EngineHost`: the engine (`modelshop.llm.engine`) runs its loop in a
process of its own (on a CPU; the GIL lesson of the classifier workers holds: a decoding step is
hundreds of small operator calls that would otherwise wait on the event loop) or, on a GPU or when
`llm_processes` is off, in a thread. Either way it talks over one duplex pipe:

    server → engine   ("add", request id, prompt ids, SamplingParams, response_format) | ("cancel", id) | None
    engine → server   ("ready", info) once loaded, then ("events", [Event, ...], running, waiting) per step

A reader thread hands each Event to the asyncio queue of its request. A client that goes away
cancels its sequence, which leaves the batch at the next step. Past `llm_max_batch` running plus
`llm_max_waiting` waiting sequences a request gets 429 at once. An engine process that dies fails
the sequences it held (their calls are not billed) and is started again.

The server process keeps the model's tokenizer: it renders the chat template and counts the prompt's
tokens before admission, so metering counts with the model's own tokenizer what the engine will read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelshop.errors import ModelError, NotFound, RateLimited, ValidationError, did_you_mean
from modelshop.llm.engine import FINISH_ERROR, Event
from modelshop.llm.sampling import SamplingParams
from modelshop.registry import Registry
from modelshop.serve.metrics import Metrics
from modelshop.settings import Settings

log = logging.getLogger("modelshop.serve")

GENERATIVE = "causal_lm"
UPSTREAM = "upstream"
SERVED_FAMILIES = (GENERATIVE, UPSTREAM)
STARTUP_TIMEOUT_S = 300.0


def llm_processes(settings: Settings) -> bool:
    if settings.llm_processes is not None:
        return settings.llm_processes
    from modelshop.inference.transformer import pick_device

    return pick_device(settings.device).type != "cuda"


def llm_threads(settings: Settings) -> int:
    return settings.llm_threads or max(1, os.cpu_count() or 1)


# --- the engine's side of the pipe ---------------------------------------------------------------

def engine_main(conn, path: str, threads: int | None, max_batch: int, prefill_tokens: int) -> None:
    """Load the model, say ready, then add, cancel and step until told to stop (a process's or thread's body)."""
    try:
        import torch

        if threads:
            import signal

            signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C stops the server, which then stops us
            torch.set_num_threads(threads)
        from modelshop.llm.engine import Engine
        from modelshop.llm.registry import load_causal_lm

        model, tokenizer, meta = load_causal_lm(Path(path))
        engine = Engine(model, tokenizer, eos_token_ids=meta["eos_token_ids"], context_length=meta["context_length"],
                        max_batch=max_batch, prefill_budget=prefill_tokens)
        grammars: dict[str, Any] = {}
    except BaseException as e:  # noqa: BLE001 - the server says why the engine could not start
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        timeout = 0 if engine.busy else None
        errors: list[Event] = []
        try:
            while conn.poll(timeout):
                msg = conn.recv()
                if msg is None:
                    return
                if msg[0] == "add":
                    _, rid, prompt, params, response_format = msg
                    try:
                        matcher = None
                        if response_format is not None:
                            matcher = _grammar(grammars, response_format, tokenizer, engine).matcher()
                        engine.add(rid, prompt, params, matcher)
                    except Exception as e:  # noqa: BLE001 - this request fails, the engine goes on
                        errors.append(Event(rid, "", 0, FINISH_ERROR, prompt_tokens=len(prompt),
                                            error=f"{type(e).__name__}: {e}"))
                elif msg[0] == "cancel":
                    engine.cancel(msg[1])
                timeout = 0
        except (EOFError, OSError):  # the server has gone
            return
        events = errors
        if engine.busy:
            try:
                events += engine.step()
            except Exception as e:
                log.exception("engine step failed")
                events += engine.fail_all(f"{type(e).__name__}: {e}")
        if events:
            try:
                conn.send(("events", events, engine.running, engine.queued))
            except (EOFError, OSError):
                return


def _grammar(cache: dict, response_format: dict, tokenizer, engine):
    from modelshop.llm.constrain import compile_grammar

    key = json.dumps(response_format, sort_keys=True)
    if key not in cache:
        if len(cache) >= 64:
            cache.clear()
        cache[key] = compile_grammar(response_format, tokenizer, engine.vocab_size,
                                     stop_token_ids=sorted(engine.eos))
    return cache[key]


# --- the server's side ---------------------------------------------------------------------------

class EngineHost:
    """One engine (in a process or a thread) and the requests streaming from it."""

    def __init__(self, path: Path, *, label: str, settings: Settings, metrics: Metrics) -> None:
        self.path, self.label, self.settings, self.metrics = path, label, settings, metrics
        self.capacity = settings.llm_max_batch + settings.llm_max_waiting
        self.in_process = not llm_processes(settings)
        self._streams: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._send_lock = threading.Lock()
        self._closed = False
        self.pid: int | None = None
        self._conn = self._worker = self._reader = None

    def start(self) -> None:
        """Start the engine and wait until it has loaded the model (blocking: call it in a thread)."""
        started = time.perf_counter()
        if self.in_process:
            ours, theirs = multiprocessing.Pipe()
            self._worker = threading.Thread(
                target=engine_main, name=f"engine-{self.label}", daemon=True,
                args=(theirs, str(self.path), None, self.settings.llm_max_batch, self.settings.llm_prefill_tokens))
        else:
            from modelshop.serve.workers import worker_context

            ctx = worker_context()
            ours, theirs = ctx.Pipe()
            self._worker = ctx.Process(
                target=engine_main, name=f"engine-{self.label}", daemon=True,
                args=(theirs, str(self.path), llm_threads(self.settings), self.settings.llm_max_batch,
                      self.settings.llm_prefill_tokens))
        self._worker.start()
        if not self.in_process:
            theirs.close()
        if not ours.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise ModelError(f"{self.label}: the generative engine did not start within {STARTUP_TIMEOUT_S:.0f} s")
        try:
            kind, detail = ours.recv()
        except EOFError:
            kind, detail = "failed", "it exited before loading the model"
        if kind != "ready":
            self._kill()
            raise ModelError(f"{self.label}: the generative engine could not start: {detail}")
        self.pid = detail
        self._conn = ours
        self._reader = threading.Thread(target=self._read, args=(ours,), name=f"engine-reader-{self.label}",
                                        daemon=True)
        self._reader.start()
        log.info("%s: generative engine ready (%s) in %.1f s", self.label,
                 "thread" if self.in_process else f"process {self.pid}", time.perf_counter() - started)

    @property
    def active(self) -> int:
        return len(self._streams)

    async def generate(self, rid: str, prompt: list[int], params: SamplingParams,
                       response_format: dict | None) -> AsyncIterator[Event]:
        """The events of one sequence until it finishes; leaving early cancels it in the engine."""
        if self._closed or self._conn is None:
            raise ModelError(f"{self.label} is not serving any more; retry")
        if len(self._streams) >= self.capacity:
            self.metrics.overloaded.inc()
            raise RateLimited(f"{self.label} is generating for {len(self._streams)} requests, its limit; "
                              "retry in a second", retry_after=1.0)
        queue: asyncio.Queue[Event] = asyncio.Queue()
        self._streams[rid] = (asyncio.get_running_loop(), queue)
        finished = False
        try:
            self._send(("add", rid, prompt, params, response_format))
            while True:
                event = await queue.get()
                finished = event.finish_reason is not None
                yield event
                if finished:
                    return
        finally:
            self._streams.pop(rid, None)
            if not finished:
                with contextlib.suppress(OSError, ValueError):
                    self._send(("cancel", rid))

    def _send(self, msg) -> None:
        with self._send_lock:
            self._conn.send(msg)

    def _read(self, conn) -> None:
        """Hand each event to its request's queue; when the engine dies, fail its requests and restart it."""
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            _, events, running, waiting = msg
            self.metrics.llm_running.labels(self.label).set(running)
            self.metrics.llm_waiting.labels(self.label).set(waiting)
            for event in events:
                target = self._streams.get(event.request_id)
                if target is not None:
                    target[0].call_soon_threadsafe(target[1].put_nowait, event)
        if self._closed:
            return
        code = getattr(self._worker, "exitcode", None)
        log.error("%s: the generative engine died (exit %s) with %d requests; starting another", self.label, code,
                  len(self._streams))
        self.metrics.worker_restarts.labels(self.label).inc()
        for rid, (loop, queue) in list(self._streams.items()):
            loop.call_soon_threadsafe(queue.put_nowait, Event(
                rid, "", 0, FINISH_ERROR, error="the model's engine process died; retry the request"))
        self._conn = None
        try:
            self.start()
        except ModelError:
            log.exception("%s: could not restart the generative engine", self.label)

    def close(self) -> None:
        """Stop the engine once the requests it holds have finished (at most 30 s; blocking)."""
        deadline = time.monotonic() + 30
        while self._streams and time.monotonic() < deadline:
            time.sleep(0.05)
        self._closed = True
        if self._conn is not None:
            with contextlib.suppress(OSError, ValueError):
                self._send(None)
        if self._worker is not None:
            self._worker.join(10)
        self._kill()

    def _kill(self) -> None:
        if isinstance(self._worker, multiprocessing.process.BaseProcess) and self._worker.is_alive():
            self._worker.kill()
            self._worker.join(5)


@dataclass
class GenerativeModel:
    name: str
    version: int
    version_id: int
    tokenizer: Any
    meta: dict
    host: EngineHost
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def context_length(self) -> int:
        return int(self.meta["context_length"])

    source = "local"

    @property
    def fallbacks(self) -> list[str]:
        return []

    def prepare_chat(self, messages: list[dict]):
        from modelshop.serve.upstream import Prepared

        ids = self.chat_prompt(messages)
        return Prepared(len(ids), ids=ids)

    def prepare_text(self, prompt: str):
        from modelshop.serve.upstream import Prepared

        ids = self.text_prompt(prompt)
        return Prepared(len(ids), ids=ids)

    async def generate(self, rid: str, prepared, params: SamplingParams, response_format: dict | None, *,
                       chat: bool) -> AsyncIterator[Event]:
        """The engine's events for this request, each naming this version as the one that answered."""
        stream = self.host.generate(rid, prepared.ids, params, response_format)
        try:
            async for event in stream:
                event.answered_by = self.ref
                yield event
        finally:
            await stream.aclose()

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValidationError(f'model "{self.name}" has no chat template; use /v1/completions with a prompt')
        return chat_ids(self.tokenizer, messages)

    def text_prompt(self, prompt: str) -> list[int]:
        return list(self.tokenizer(prompt)["input_ids"])


def chat_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The prompt's token ids as the tokenizer's chat template renders `messages` for a reply."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)   # a BatchEncoding in transformers 5


def load_generative(row, path: Path, settings: Settings, metrics: Metrics) -> GenerativeModel:
    """Start the engine of one registered generative version (blocking: call it in a thread)."""
    from transformers import AutoTokenizer

    meta = json.loads((path / "modelshop.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(path)
    host = EngineHost(path, label=row.ref, settings=settings, metrics=metrics)
    host.start()
    return GenerativeModel(row.name, row.version, row.id, tokenizer, meta, host)


class GenerativePool:
    """The production version of every generative name, kept current as `ModelPool` keeps classifiers."""

    def __init__(self, settings: Settings, registry: Registry, metrics: Metrics) -> None:
        self.settings, self.registry, self.metrics = settings, registry, metrics
        self.served: dict[str, GenerativeModel] = {}
        self.production: dict[str, Any] = {}
        self._failed: dict[str, tuple[int, str]] = {}
        self._loading: dict[str, tuple[int, asyncio.Task]] = {}
        self._checked_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        self._retiring: set[asyncio.Task] = set()
        self._http = None

    async def start(self) -> None:
        await self.refresh(force=True)
        await asyncio.gather(*(task for _, task in list(self._loading.values())))

    async def get(self, name: str) -> GenerativeModel:
        await self.refresh()
        if name not in self.production:
            await self.refresh(force=True)
        if name not in self.production:
            names = sorted(self.production)
            served = f"; served: {', '.join(names)}" if names else \
                "; none is registered (add one with `modelshop llm add --name NAME --base-model smollm2`)"
            raise NotFound(f'no generative model named "{name}"{did_you_mean(name, names)}{served}')
        loading = self._loading.get(name)
        if loading is not None:
            await asyncio.shield(loading[1])
        model = self.served.get(name)
        if model is None:
            why = self._failed.get(name, (0, "it is still loading"))[1]
            raise ModelError(f'generative model "{name}" could not be loaded: {why}')
        return model

    async def models(self) -> list[GenerativeModel]:
        await self.refresh()
        return [self.served[n] for n in sorted(self.served)]

    async def refresh(self, force: bool = False) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        if not force and (time.monotonic() - self._checked_at < self.settings.reload_interval_s
                          or self._lock.locked()):
            return
        async with self._lock:
            rows = await asyncio.to_thread(self.registry.production)
            self._checked_at = time.monotonic()
            self.production = {r.name: r for r in rows if r.family in SERVED_FAMILIES}
            for name, row in self.production.items():
                served = self.served.get(name)
                if (served is None or served.version_id != row.id) and self._failed.get(name, (None,))[0] != row.id \
                        and self._loading.get(name, (None,))[0] != row.id:
                    self._loading[name] = (row.id, asyncio.get_running_loop().create_task(self._load(row)))
            for name in [n for n in self.served if n not in self.production]:
                self._retire(self.served.pop(name))

    async def _load(self, row) -> None:
        try:
            if row.family == UPSTREAM:
                new = await asyncio.to_thread(self._upstream, row)
            else:
                new = await asyncio.to_thread(load_generative, row, self.registry.path(row), self.settings,
                                              self.metrics)
        except Exception as e:
            log.exception("could not load %s", row.ref)
            self._failed[row.name] = (row.id, f"{type(e).__name__}: {e}")
            return
        finally:
            if self._loading.get(row.name, (None,))[0] == row.id:
                self._loading.pop(row.name)
        current = self.production.get(row.name)
        if current is None or current.id != row.id:
            self._retire(new)
            return
        old = self.served.get(row.name)
        self.served[row.name] = new
        self._failed.pop(row.name, None)
        if old is not None:
            self.metrics.swaps.labels(row.name).inc()
            self._retire(old)

    def _upstream(self, row):
        """An upstream model: its settings, the tokenizer that counts its tokens, the shared HTTP client."""
        from modelshop.llm.upstream import read_meta
        from modelshop.serve.upstream import Counter, UpstreamModel

        meta = read_meta(self.registry.path(row))
        old = self.served.get(row.name)
        breaker = getattr(old, "breaker", None)
        model = UpstreamModel(row.name, row.version, row.id, meta, Counter(self._counting_tokenizer(meta)),
                              self.http)
        if breaker is not None:
            model.breaker = breaker        # a new version of the same upstream keeps its cooldown
        return model

    def _counting_tokenizer(self, meta: dict):
        name = meta.get("tokenizer")
        if not name:
            return None
        from transformers import AutoTokenizer

        path = Path(name)
        if not path.is_dir():
            path = self.registry.path(self.registry.get(name))
        return AutoTokenizer.from_pretrained(path)

    def http(self):
        """The one HTTP client every upstream call goes through (connections kept alive and pooled); made on
        first use, in the event loop."""
        if self._http is None:
            import aiohttp

            # aiohttp: a fifth of httpx's CPU per streamed call, measured (benchmarks/gateway_load.py)
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1024, limit_per_host=0),
                                               trust_env=False, auto_decompress=True)
        return self._http

    async def chain(self, model) -> list:
        """`model`, then its fallbacks that are served (a fallback's own fallbacks are not followed)."""
        out = [model]
        for name in model.fallbacks:
            try:
                out.append(await self.get(name))
            except Exception:  # noqa: BLE001 - an unknown or broken fallback is skipped, and said
                log.warning("fallback %s of %s is not served; skipped", name, model.name)
        return out

    def _retire(self, model) -> None:
        if not hasattr(model, "host"):
            return
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(model.host.close))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for _, task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(m.host.close) for m in self.served.values() if hasattr(m, "host")),
                             *self._retiring, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
