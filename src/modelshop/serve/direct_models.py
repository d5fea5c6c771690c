"""`DirectModels`: the `Models` of a process without a server (the CLI, scripts, library calls).

Each registered version and each embedding model is loaded once per process, on first use, and
kept (a few of each: a CLI command or a notebook uses one or two), as `apps/support.py` and
`apps/faq.py` did before each with a cache of its own. Inside a server nothing calls this: the
server's apps get its `PooledModels`, so it holds one copy of each model. `unload()` drops what
was loaded, for a process that builds knowledge bases and then serves (`modelshop demo`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

from modelshop.errors import ValidationError
from modelshop.inference.models import Classified, Embedded, Task, check_task
from modelshop.settings import Settings, get_settings


@functools.lru_cache(maxsize=8)
def _predictor(folder: str, ref: str, files_sha256: tuple[tuple[str, str], ...] | None, device: str,
               threads: int | None):
    from modelshop.inference import load_predictor

    registered = SimpleNamespace(ref=ref, files_sha256=dict(files_sha256) if files_sha256 is not None else None)
    return load_predictor(Path(folder), device=device, threads=threads, registered=registered)


def unload() -> None:
    """Forget every model loaded here (the memory goes back once nothing else holds them)."""
    from modelshop.serve.embeddings import load_embedder

    _predictor.cache_clear()
    load_embedder.cache_clear()


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

    def count_tokens(self, texts: Sequence[str], model: str | None = None, *, task: Task = "classify") -> int:
        texts = _texts(texts)
        check_task(task)
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
