"""Generative versions in the model registry: registering a local causal LM, listing them, loading one.

A generative version is an ordinary registry version (`modelshop.registry.Registry`: stages,
numbering, the first version of a name in production) with family "causal_lm", format "pytorch"
and no labels. Its folder is what `convert` wrote once at registration (fp32 safetensors, the
tokenizer with its chat template, the generation config) plus `modelshop.json`, whose keys are:

    family "causal_lm", format "pytorch", dtype "float32", base_model (as given), source
    ("gguf" | "huggingface"), gguf_file, architecture (config.model_type, e.g. "llama"),
    model_class, context_length, parameters, vocab_size, eos_token_ids (list), bos_token_id,
    pad_token_id, has_chat_template, conversion_seconds, files_sha256 (added by the registry)

The engine calls `load_causal_lm` on such a folder; `is_generative` tells its rows from classifiers'.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from modelshop.errors import ValidationError
from modelshop.llm.convert import FAMILY, FORMAT, convert, quiet_transformers, resolve
from modelshop.registry import META_FILE, ModelVersion, Registry, check_name
from modelshop.settings import Settings, get_settings

__all__ = ["FAMILY", "add_local", "list_generative", "load_causal_lm", "is_generative", "is_llm", "kind", "summary"]


def is_generative(row) -> bool:
    """Whether a registry row (anything with `family`) is a generative model rather than a classifier."""
    return getattr(row, "family", None) == FAMILY


def is_llm(row) -> bool:
    """Whether a row is a generative model sold per token: a local causal LM or an upstream provider's model."""
    return getattr(row, "family", None) in (FAMILY, "upstream")


def kind(row) -> str:
    """"generative" or "classifier": what `models list` shows for a version."""
    return "generative" if is_llm(row) else "classifier"


def add_local(name: str, base_model: str, *, settings: Settings | None = None, registry: Registry | None = None,
              say: Callable[[str], None] | None = None) -> dict:
    """Register `base_model` (smollm2 | a .gguf file | a HF folder | a cached hub id) as the next version
    of `name`; converts it once into the registry. Returns `summary` of the version plus its path."""
    settings = settings or get_settings()
    registry = registry or Registry.from_settings(settings)
    check_name(name)
    _check_not_a_classifier(registry, name)
    source = resolve(base_model)  # a wrong path or alias fails here, before any slow work
    build = registry.incoming_dir()
    try:
        meta = convert(source, build, say=say, progress=settings.progress)
        meta = {**meta, "base_model": base_model}
        (build / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        (build / "card.md").write_text(_card(name, meta), encoding="utf-8")
        row = registry.register(name, build, family=FAMILY, format=FORMAT, base_model=base_model, labels=[],
                                multi_label=False, metrics={})
    finally:
        if build.exists():  # not moved into place: a half-written version
            shutil.rmtree(build, ignore_errors=True)
    return {**summary(row, meta), "path": str(registry.path(row)), "source": meta["source"],
            "eos_token_ids": meta["eos_token_ids"], "has_chat_template": meta["has_chat_template"],
            "conversion_seconds": meta["conversion_seconds"]}


def list_generative(registry: Registry | None = None) -> list[dict]:
    """Every generative version, by name and version, with what its modelshop.json says."""
    registry = registry or Registry.from_settings()
    out = []
    for row in registry.list():
        if is_llm(row):
            try:
                meta = registry.meta(row)
            except (OSError, ValueError):  # files gone or unreadable: still list the row
                meta = {}
            out.append(summary(row, meta))
    return out


def summary(row: ModelVersion, meta: dict) -> dict:
    """The listing of one generative version (`llm list --json`)."""
    return {"name": row.name, "version": row.version, "stage": row.stage, "kind": kind(row),
            "source": "upstream" if row.family == "upstream" else "local",
            "base_model": row.base_model, "architecture": meta.get("architecture"),
            "context_length": meta.get("context_length"), "parameters": meta.get("parameters"),
            "created_at": row.created_at.isoformat() if row.created_at else None}


def load_causal_lm(folder: Path, *, threads: int | None = None):
    """(model, tokenizer, meta) of a generative version's folder: the model in fp32 on CPU and in eval
    mode (wrap calls in `torch.no_grad()`), its tokenizer (with pad token and chat template), and the
    folder's modelshop.json. `threads` sets torch's intra-op threads for the process when given."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ValidationError(f"{folder} is not a modelshop model folder (no {META_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("family") != FAMILY:
        raise ValidationError(f'{folder} holds a {meta.get("family")} model, not a generative one ("{FAMILY}")')
    if threads:
        torch.set_num_threads(threads)
    with quiet_transformers(progress=False):
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    return model.eval(), tokenizer, meta


def _check_not_a_classifier(registry: Registry, name: str) -> None:
    """One name, one kind: a generative version under a classifier's name would be served as either."""
    rows = registry.list(name)
    if rows and not is_generative(rows[-1]):
        raise ValidationError(f'model name "{name}" belongs to a classifier ({rows[-1].family}); '
                              "pick another name for the generative model")


def _card(name: str, meta: dict) -> str:
    context = meta.get("context_length")
    return "\n".join([
        f"# {name}", "",
        "A generative (causal language) model, served through the OpenAI-compatible API.", "",
        "| | |", "| --- | --- |",
        f"| base model | {meta['base_model']} |",
        f"| architecture | {meta['architecture']} ({meta['model_class']}) |",
        f"| parameters | {meta['parameters']:,} |",
        f"| context length | {context:,} tokens |" if context else "| context length | unknown |",
        f"| chat template | {'yes' if meta['has_chat_template'] else 'no'} |",
        f"| weights | fp32 safetensors, from {meta['source']}"
        + (f" ({meta['gguf_file']}, de-quantised)" if meta.get("gguf_file") else "") + " |",
        "",
    ])
