"""The models a server serves: the production version of every registered name, kept current.

Each `ServedModel` owns its predictor, its tokeniser thread and its `Batcher` (whose `serve_workers`
threads run the batches: in this process, or, for PyTorch models on a CPU, each through a worker
process of its own that holds a copy of the model; see `modelshop.serve.workers`). The `ModelPool`
checks the registry at most every `reload_interval_s`; a newly promoted version loads in a thread
while the old one keeps serving, then the reference is swapped and the old one finishes what it has
queued (and its worker processes stop). A request that already holds the old one completes on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelshop.errors import ModelError, NotFound, ValidationError, did_you_mean
from modelshop.registry import Registry
from modelshop.serve.batcher import Batcher
from modelshop.serve.metrics import Metrics
from modelshop.serve.runners import Encoded, EnsembleRunner, Seq, TfidfRunner, TransformerRunner, ready
from modelshop.serve.workers import ProcessWorkers
from modelshop.settings import Settings

log = logging.getLogger("modelshop.serve")

NONE_REGISTERED = ("no model is in production yet; train one with `modelshop train --data FILE --name NAME` (it is "
                   "served at once, no restart needed) or promote a version with "
                   "`modelshop models promote NAME:VERSION`")


def serve_workers(settings: Settings) -> int:
    """Batches a served model runs at once: the setting, else one per core up to 4 on a CPU, 1 on a GPU."""
    if settings.serve_workers:
        return settings.serve_workers
    from modelshop.inference.transformer import pick_device

    if pick_device(settings.device).type == "cuda":
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def serve_threads(settings: Settings) -> int:
    """Intra-op threads for torch and onnxruntime: the setting, else the cores shared out among the workers."""
    return settings.torch_threads or max(1, (os.cpu_count() or 1) // serve_workers(settings))


def serve_processes(settings: Settings) -> bool:
    """Whether PyTorch models run their batches in worker processes: the setting, else on a CPU with 2+ workers."""
    if settings.serve_processes is not None:
        return settings.serve_processes
    from modelshop.inference.transformer import pick_device

    return serve_workers(settings) > 1 and pick_device(settings.device).type != "cuda"


def _classifier_runner(path: str, device: str, threads: int, label: str) -> TransformerRunner:
    """A worker process's runner for a registered PyTorch version (module-level: it is pickled by name)."""
    from modelshop.inference import load_predictor

    return TransformerRunner(load_predictor(Path(path), device=device, threads=threads), label=label, as_torch=True)


def _ensemble_runner(path: str, device: str, threads: int, label: str, files_sha256: dict | None) -> EnsembleRunner:
    """A worker process's runner for a registered ensemble; its tfidf part checked against the row's hashes."""
    from types import SimpleNamespace

    from modelshop.inference import load_predictor

    registered = SimpleNamespace(ref=label, files_sha256=files_sha256)
    return EnsembleRunner(load_predictor(Path(path), device=device, threads=threads, registered=registered),
                          label=label)


def _embedding_runner(source: str, name: str, threads: int, label: str) -> TransformerRunner:
    from modelshop.serve.embeddings import Embedder

    return TransformerRunner(Embedder(source, name=name, threads=threads), label=label, as_torch=True)


@dataclass
class ServedModel:
    name: str
    version: int | None
    version_id: int | None
    family: str
    format: str
    labels: list[str]
    multi_label: bool
    max_length: int
    predictor: Any
    runner: Any
    batcher: Batcher
    tokenize_thread: ThreadPoolExecutor
    metrics: Metrics
    processes: ProcessWorkers | None = None
    extras: dict = field(default_factory=dict)
    trained_length: int | None = None   # the length it was trained at (max_length is what it accepts)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}" if self.version is not None else self.name

    async def prepare(self, seqs: list[Seq], truncate: bool, direction: str) -> tuple[list[Encoded], float]:
        started = time.perf_counter()
        encoded = await asyncio.get_running_loop().run_in_executor(
            self.tokenize_thread, self.runner.prepare, seqs, truncate, direction)
        seconds = time.perf_counter() - started
        self.metrics.tokenization_seconds.labels(self.batcher.name).observe(seconds)
        return encoded, seconds

    async def aclose(self) -> None:
        """Finish what is queued, then stop the worker processes (a late batch runs in this process)."""
        await self.batcher.aclose()
        if self.processes is not None:
            await asyncio.to_thread(self.processes.close)

    async def on_model_thread(self, fn, *args):
        """Run `fn` in this process when a worker's turn is free, so it takes a turn instead of adding one."""
        return await self.batcher.call(fn, *args)


@dataclass(frozen=True)
class Loaded:
    """A model loaded in this process, as its loader hands it to `_wrap`."""

    name: str
    version: int | None
    version_id: int | None
    predictor: Any           # its family, format, labels, multi_label and trained length are read from it
    runner: Any
    spawn: tuple | None = None   # (factory, args) that build the runner in a worker process (PyTorch models)

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}" if self.version is not None else self.name


def _wrap(loaded: Loaded, settings: Settings, metrics: Metrics) -> ServedModel:
    """The served model: its worker processes (for a PyTorch model, when `serve_processes`), its batcher
    and tokeniser thread."""
    label, runner, predictor = loaded.label, loaded.runner, loaded.predictor
    workers = serve_workers(settings)
    in_processes = loaded.spawn is not None and serve_processes(settings)
    ready(runner, label, calibrate=not in_processes)  # with worker processes, each gets its own runner ready
    processes = None
    if in_processes:
        processes = ProcessWorkers(*loaded.spawn, n=workers, threads=serve_threads(settings), label=label,
                                   fallback=runner.run, on_restart=metrics.worker_restarts.labels(label).inc)
        processes.start()
    batcher = Batcher(label, processes.run if processes else runner.run, max_batch_tokens=settings.max_batch_tokens,
                      max_batch_requests=settings.max_batch_requests, max_wait_ms=settings.max_wait_ms,
                      metrics=metrics, workers=workers)
    return ServedModel(name=loaded.name, version=loaded.version, version_id=loaded.version_id,
                       family=predictor.family, format=predictor.format, labels=list(getattr(predictor, "labels", [])),
                       multi_label=bool(getattr(predictor, "multi_label", False)), max_length=runner.max_length,
                       predictor=predictor, runner=runner, batcher=batcher,
                       tokenize_thread=ThreadPoolExecutor(1, thread_name_prefix=f"tokenize-{label}"), metrics=metrics,
                       processes=processes, trained_length=getattr(predictor, "trained_length", None))


def load_served(row, path: Path, settings: Settings, metrics: Metrics) -> ServedModel:
    """Load one registered version for serving (blocking: call it in a thread)."""
    from modelshop.inference import load_predictor

    threads = serve_threads(settings)
    predictor = load_predictor(path, device=settings.device, threads=threads, registered=row)
    spawn = None
    if predictor.family == "tfidf":
        runner = TfidfRunner(predictor, label=row.ref)
    elif predictor.family == "ensemble":  # its transformer part is PyTorch: worker processes, as for one alone
        runner = EnsembleRunner(predictor, label=row.ref)
        spawn = (_ensemble_runner, (str(path), settings.device, threads, row.ref, row.files_sha256))
    else:
        runner = TransformerRunner(predictor, label=row.ref, as_torch=predictor.format != "onnx")
        if predictor.format != "onnx":  # onnxruntime gives up the GIL for a whole run: threads do
            spawn = (_classifier_runner, (str(path), settings.device, threads, row.ref))
    return _wrap(Loaded(row.name, row.version, row.id, predictor, runner, spawn), settings, metrics)


def load_embedding_model(settings: Settings, metrics: Metrics) -> ServedModel:
    from modelshop.serve.embeddings import Embedder, embedding_ref, embedding_source

    source, label = embedding_source(settings.embedding_model), f"embedding model {settings.embedding_model}"
    embedder = Embedder(source, name=settings.embedding_model, threads=serve_threads(settings))
    runner = TransformerRunner(embedder, label=label, as_torch=True)
    spawn = (_embedding_runner, (source, settings.embedding_model, serve_threads(settings), label))
    loaded = Loaded(embedding_ref(settings.embedding_model), None, None, embedder, runner, spawn)
    return _wrap(loaded, settings, metrics)


class ModelPool:
    def __init__(self, settings: Settings, registry: Registry, metrics: Metrics) -> None:
        self.settings = settings
        self.registry = registry
        self.metrics = metrics
        self.served: dict[str, ServedModel] = {}
        self.production: dict[str, Any] = {}           # name → its production row, as last read
        self._loading: dict[str, tuple[int, asyncio.Task]] = {}
        self._failed: dict[str, tuple[int, str]] = {}  # name → (version id, why it did not load)
        self._checked_at = float("-inf")
        self._lock: asyncio.Lock | None = None
        self._embedder: ServedModel | None = None
        self._embedder_lock: asyncio.Lock | None = None
        self._retiring: set[asyncio.Task] = set()

    async def start(self) -> None:
        """Load every production version now (the server answers only once they are in)."""
        await self.refresh(force=True)
        await asyncio.gather(*(task for _, task in list(self._loading.values())))

    async def get(self, name: str | None) -> ServedModel:
        """The served model for `name`, or the default one when no name is given."""
        await self.refresh()
        name = self.resolve(name)
        served = self.served.get(name)
        if served is not None:
            return served
        if name not in self.production:
            await self.refresh(force=True)  # registered since the last look?
            if name not in self.production:
                if not self.production:
                    raise NotFound(f'no model named "{name}" is served: {NONE_REGISTERED}')
                raise NotFound(f'no model named "{name}" is served{did_you_mean(name, self.production)}; '
                               f"served: {', '.join(sorted(self.production))}")
        loading = self._loading.get(name)
        if loading is not None:
            await asyncio.shield(loading[1])
        served = self.served.get(name)
        if served is None:
            why = self._failed.get(name, (0, "it is still loading"))[1]
            raise ModelError(f'model "{name}" could not be loaded: {why}')
        return served

    def failures(self) -> dict[str, str]:
        """Names whose production version could not be loaded, and why."""
        return {name: why for name, (vid, why) in self._failed.items()
                if name in self.production and self.production[name].id == vid}

    def resolve(self, name: str | None) -> str:
        if name:
            return name
        names = sorted(self.production)
        if len(names) == 1:
            return names[0]
        if self.settings.default_model:
            return self.settings.default_model
        if not names:
            raise NotFound(NONE_REGISTERED)
        raise ValidationError(f"{len(names)} models are served ({', '.join(names)}); choose one with ?model=NAME "
                              "(or POST /models/NAME), or set MODELSHOP_DEFAULT_MODEL")

    async def refresh(self, force: bool = False) -> None:
        """Re-read the production versions (at most every reload_interval_s unless forced)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        if not force and (time.monotonic() - self._checked_at < self.settings.reload_interval_s
                          or self._lock.locked()):
            return
        async with self._lock:
            if force or time.monotonic() - self._checked_at >= self.settings.reload_interval_s:
                rows = await asyncio.to_thread(self.registry.production)
                self._checked_at = time.monotonic()
                # generative versions are served by serve.generation.GenerativePool
                self.production = {r.name: r for r in rows if r.family not in ("causal_lm", "upstream")}
                for name, row in self.production.items():
                    served = self.served.get(name)
                    if served is None or served.version_id != row.id:
                        self._start_load(row)
                for name in [n for n in self.served if n not in self.production]:
                    self._retire(self.served.pop(name))  # no production version any more

    def _start_load(self, row) -> None:
        if self._failed.get(row.name, (None,))[0] == row.id:
            return  # this version already failed to load; a new promotion retries
        current = self._loading.get(row.name)
        if current is not None and current[0] == row.id:
            return
        self._loading[row.name] = (row.id, asyncio.get_running_loop().create_task(self._load(row)))

    async def _load(self, row) -> None:
        try:
            new = await asyncio.to_thread(load_served, row, self.registry.path(row), self.settings, self.metrics)
        except Exception as e:
            log.exception("could not load %s", row.ref)
            self._failed[row.name] = (row.id, f"{type(e).__name__}: {e}")
            return
        finally:
            if self._loading.get(row.name, (None,))[0] == row.id:
                self._loading.pop(row.name)
        current = self.production.get(row.name)
        if current is None or current.id != row.id:
            return  # promoted again (or retired) while this one loaded
        old = self.served.get(row.name)
        self.served[row.name] = new
        self._failed.pop(row.name, None)
        if old is not None:
            log.info("swapped %s for %s", old.ref, new.ref)
            self.metrics.swaps.labels(row.name).inc()
            self._retire(old)  # it finishes what it has queued; requests holding it complete on it

    def _retire(self, served: ServedModel) -> None:
        task = asyncio.get_running_loop().create_task(served.aclose())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def embedder(self) -> ServedModel:
        """The sentence-embedding model, loaded on first use."""
        if self._embedder is None:
            if self._embedder_lock is None:
                self._embedder_lock = asyncio.Lock()
            async with self._embedder_lock:
                if self._embedder is None:
                    try:
                        self._embedder = await asyncio.to_thread(load_embedding_model, self.settings, self.metrics)
                    except ValidationError:
                        raise
                    except Exception as e:
                        raise ModelError(f"the embedding model could not be loaded: {type(e).__name__}: {e}") from e
        return self._embedder

    async def aclose(self) -> None:
        for task in [t for _, t in self._loading.values()]:
            task.cancel()
        models = list(self.served.values()) + ([self._embedder] if self._embedder else [])
        await asyncio.gather(*(m.aclose() for m in models), *self._retiring, return_exceptions=True)
