"""Fine-tuning a generative model on a company's own conversations, end to end:

    data (sft_data: read, check, redact, profile) → base model → the base scored on the evaluation set
    → LoRA fine-tuning (sft_loop) → decode speed with the adapter on the base → adapter merged → the
    version scored (evaluate) → folder (weights, tokenizer, adapter/, card, figures) → registered

The base is a registered generative model (NAME: its production version; then the new version's parent
in the registry), or anything `modelshop llm add` takes (smollm2, a .gguf file, a Hugging Face folder, a
cached hub id), loaded in memory for the run. The result is an ordinary generative version: the first
of a new name goes to production and serves at once through /v1/chat/completions; plans price it by its
own name. The adapter is merged into the weights because decoding is faster that way (measured each run
and written on the card); the adapter is kept in `adapter/` for whoever wants it on the base.

One process, CPU or one GPU (`accelerate` picks the device). Options are `FinetuneConfig`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modelshop.errors import ValidationError, did_you_mean
from modelshop.llm import sft_data
from modelshop.llm.convert import FAMILY, FORMAT, Source, describe, load_source, quiet_transformers, resolve
from modelshop.llm.evaluate import decode_speed, score, verdict
from modelshop.llm.sft_loop import OnStep, attach_lora, fit_lora
from modelshop.registry import META_FILE, ModelVersion, Registry, check_name
from modelshop.settings import Settings, get_settings

MIN_ROWS_FOR_VALIDATION = 20   # below this a validation split leaves too little to learn from
MIN_ROWS_FOR_EVAL = 10         # below this, no evaluation set can be held out: give --eval
Say = Callable[[str], None]


@dataclass
class FinetuneConfig:
    base_model: str = "smollm2"          # a registered generative NAME | smollm2 | .gguf | HF folder | cached hub id
    epochs: int = 3                      # small data converges in a few passes; early stopping guards the rest
    batch_size: int = 8                  # conversations per step: fits 2 CPU cores and any GPU at 512 tokens
    learning_rate: float = 2e-4          # the usual LoRA rate (10x full fine-tuning's: few numbers move)
    warmup_ratio: float = 0.05           # linear warm-up over the first 5% of steps, then linear decay
    weight_decay: float = 0.0            # adapters start at zero (B = 0); decaying them only slows learning
    lora_rank: int = 16                  # r: 16 holds an FAQ's facts; more costs memory, rarely quality
    lora_alpha: float = 32.0             # scale alpha/r = 2, as in the LoRA and QLoRA papers
    lora_dropout: float = 0.05           # on the adapters' input: small data overfits without it
    target_modules: str | list[str] = "all-linear"  # every linear layer but the head: any architecture
    max_length: int | None = None        # tokens per conversation; None: the longest, within the context
    seed: int = 42                       # same seed, data and hardware → the same adapter
    early_stopping_patience: int = 2     # epochs without a lower validation loss before stopping (0: off)
    validation_fraction: float = 0.1     # carved from the training rows for early stopping
    eval_fraction: float = 0.2           # held out for the figures when no --eval file is given
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"        # auto: bf16 on a GPU or a bf16-capable CPU, else fp32 | no | fp16 | bf16
    group_by_length: bool = True         # batches of similar length: little padding on short answers
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, slower steps
    max_grad_norm: float = 1.0
    system_prompt: str | None = None     # added to every conversation that has none (also say it when serving)
    redact_pii: bool = True              # e-mails, phones, ID and card numbers → [EMAIL] ... before training
    answer_limit: int | None = 100       # greedy answers scored on at most this many eval rows (perplexity: all)
    max_new_tokens: int | None = None    # per greedy answer; None: the longest reference and a quarter more
    sample_answers: int = 3              # question, reference, base's and fine-tuned answers on the card
    speed_tokens: int = 32               # tokens decoded per prompt when timing merged vs adapter-on-base
    speed_prompts: int = 3               # prompts timed (0: skip the measurement)
    checkpoint_dir: Path | None = None   # default: MODELSHOP_HOME/runs/llm-NAME, removed once registered
    checkpoint_steps: int = 0            # also checkpoint every N batches (0: at each epoch's end only)
    resume: bool = False                 # continue from the last checkpoint in checkpoint_dir
    limit: int | None = None             # use only the first N rows of the file (quick tries)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> ValidationError:
            return ValidationError(f"{option}: {why}")

        for option in ("epochs", "batch_size", "lora_rank", "gradient_accumulation_steps", "sample_answers"):
            value = getattr(self, option)
            if not isinstance(value, int) or value < (0 if option == "sample_answers" else 1):
                raise bad(option, f"must be a whole number ≥ {0 if option == 'sample_answers' else 1}, got {value!r}")
        if not 0 < self.learning_rate < 1:
            raise bad("learning_rate", f"must be between 0 and 1, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise bad("weight_decay", f"must be ≥ 0, got {self.weight_decay}")
        if self.lora_alpha <= 0:
            raise bad("lora_alpha", f"must be > 0, got {self.lora_alpha}")
        if not 0 <= self.lora_dropout < 1:
            raise bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        if isinstance(self.target_modules, list | tuple):
            if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
                raise bad("target_modules", "must be all-linear or a non-empty list of layer names, "
                                            "e.g. [q_proj, v_proj]")
            self.target_modules = list(self.target_modules)
        elif not isinstance(self.target_modules, str) or not self.target_modules:
            raise bad("target_modules", "must be all-linear or a list of layer names, e.g. [q_proj, v_proj]")
        if self.max_length is not None and not 16 <= self.max_length <= 32768:
            raise bad("max_length", f"must be between 16 and 32768 tokens, got {self.max_length}")
        if not 0 <= self.validation_fraction < 0.5:
            raise bad("validation_fraction", f"must be in [0, 0.5), got {self.validation_fraction}")
        if not 0 < self.eval_fraction < 0.9:
            raise bad("eval_fraction", f"must be in (0, 0.9), got {self.eval_fraction}")
        if self.early_stopping_patience < 0:
            raise bad("early_stopping_patience", "must be ≥ 0 (0 turns early stopping off)")
        if self.mixed_precision not in {"auto", "no", "fp16", "bf16"}:
            raise bad("mixed_precision", f'must be auto, no, fp16 or bf16, got "{self.mixed_precision}"'
                      + did_you_mean(str(self.mixed_precision), ["auto", "no", "fp16", "bf16"]))
        for option in ("answer_limit", "max_new_tokens", "limit"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise bad(option, f"must be a whole number ≥ 1 or left out, got {value!r}")
        if self.speed_tokens < 1 or self.speed_prompts < 0 or self.checkpoint_steps < 0:
            raise bad("speed_tokens" if self.speed_tokens < 1 else "speed_prompts" if self.speed_prompts < 0
                      else "checkpoint_steps", "must be ≥ 0 (speed_tokens ≥ 1)")
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)

    def replace(self, **changes) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["checkpoint_dir"] = str(self.checkpoint_dir) if self.checkpoint_dir else None
        return d

    @classmethod
    def from_yaml(cls, path: Path, **overrides) -> FinetuneConfig:
        """Options from a YAML mapping; explicit `overrides` (from the command line) win."""
        path = Path(path)
        if not path.is_file():
            raise ValidationError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValidationError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValidationError(f"config file {path} must be a mapping of option: value")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: dict) -> FinetuneConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ValidationError(f'unknown fine-tuning option "{key}"{did_you_mean(key, names)}')
        try:
            return cls(**data)
        except TypeError as e:
            raise ValidationError(f"fine-tuning options: {e}") from None

    def run_key(self, data_sha256: str, base: str) -> str:
        """What a checkpoint must match to be resumed: the data, the base and every option that shapes
        the steps (not epochs: a finished run may be resumed for more of them)."""
        shaping = {k: v for k, v in self.to_dict().items()
                   if k not in {"epochs", "resume", "checkpoint_dir", "checkpoint_steps", "answer_limit",
                                "max_new_tokens", "sample_answers", "speed_tokens", "speed_prompts",
                                "early_stopping_patience"}}
        blob = json.dumps([data_sha256, base, shaping], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


# --- the base model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Base:
    """What --base-model named: a registered generative version, or a source to load for this run."""

    given: str
    row: ModelVersion | None = None
    source: Source | None = None

    @property
    def ref(self) -> str:
        return f"{self.row.name}:{self.row.version}" if self.row else self.given


def resolve_base(given: str, registry: Registry) -> Base:
    """A registered name first (its production version), else what `llm add` accepts; one-line errors."""
    from modelshop.llm.registry import is_generative

    looks_like_path = given.startswith((".", "/", "~")) or Path(given).expanduser().exists()
    if not looks_like_path and registry.list(given.partition(":")[0]):
        row = registry.get(given)
        if not is_generative(row):
            raise ValidationError(f'"{given}" is a classifier ({row.family}); fine-tune a generative model: a '
                                  "name from `modelshop llm list`, smollm2, a .gguf file or a Hugging Face folder")
        return Base(given, row=row)
    return Base(given, source=resolve(given))


def load_base(base: Base, registry: Registry, *, progress: bool = False):
    """(model, tokenizer, meta) of the base, in fp32."""
    from modelshop.llm.registry import load_causal_lm

    if base.row is not None:
        return load_causal_lm(registry.path(base.row))
    model, tokenizer = load_source(base.source, progress=progress)
    return model, tokenizer, {**describe(model, tokenizer), "source": base.source.kind}


# --- the run -------------------------------------------------------------------------------------

def run_finetune(data, eval_data=None, *, name: str, cfg: FinetuneConfig | None = None,
                 question_col: str | None = None, answer_col: str | None = None, settings: Settings | None = None,
                 registry: Registry | None = None, progress: bool | None = None, say: Say | None = None,
                 on_step: OnStep | None = None) -> dict:
    """Fine-tune `cfg.base_model` on `data`, score it beside its base, register version N of `name`;
    returns the figures (`llm train --json`). `on_step(step, loss)` is called after every batch."""
    from modelshop.llm.sft_card import finetune_card, training_curves_png

    settings = settings or get_settings()
    cfg = cfg or FinetuneConfig()
    registry = registry or Registry.from_settings(settings)
    progress = settings.progress if progress is None else progress
    say = say or (lambda _m: None)
    started = time.perf_counter()
    check_name(name)
    _check_name_is_generative(registry, name)
    base = resolve_base(cfg.base_model, registry)  # a wrong base fails before any data work

    train_all = sft_data.load_sft(data, question_col=question_col, answer_col=answer_col,
                                  system_prompt=cfg.system_prompt, limit=cfg.limit)
    held = (sft_data.load_sft(eval_data, question_col=question_col, answer_col=answer_col,
                              system_prompt=cfg.system_prompt) if eval_data is not None else None)
    data_sha256 = train_all.fingerprint()   # of the file as given: the lineage key
    redacted, pii, pii_rows = sft_data.redact(train_all)   # counted either way, for the profile
    train = redacted if cfg.redact_pii else train_all
    if held is None:
        if len(train) < MIN_ROWS_FOR_EVAL:
            raise ValidationError(f"{len(train)} conversations are too few to hold out an evaluation set; give "
                                  f"--eval FILE or at least {MIN_ROWS_FOR_EVAL} rows")
        train, held = train.split(cfg.eval_fraction, cfg.seed)
        eval_source = f"{train_all.source} ({cfg.eval_fraction:.0%} held out, seed {cfg.seed})"
    else:
        held = sft_data.redact(held)[0] if cfg.redact_pii else held
        eval_source = held.source

    say(f"loading the base model {base.ref} ...")
    model, tokenizer, base_meta = load_base(base, registry, progress=progress)
    added_template = sft_data.ensure_chat_template(tokenizer)
    context = base_meta["context_length"]
    encoded = sft_data.encode(tokenizer, train)
    max_length = cfg.max_length or sft_data.auto_max_length(encoded.lengths, context)
    if max_length > context:
        raise ValidationError(f"max_length {max_length} is past the model's context of {context} tokens")
    fitting, left_out = sft_data.fit_length(encoded, max_length, train.source, context)
    fit_enc, val_enc = fitting, None
    if cfg.validation_fraction > 0 and len(fitting) >= MIN_ROWS_FOR_VALIDATION:
        rest, val_idx = sft_data.split_indices(len(fitting), cfg.validation_fraction, cfg.seed + 1)
        fit_enc, val_enc = fitting.subset(rest), fitting.subset(val_idx)
    profile = sft_data.profile_sft(train, encoded, eval_data=held, pii=pii, pii_rows=pii_rows,
                                   redacted=cfg.redact_pii, max_length=max_length, left_out=left_out,
                                   tokenizer_name=base.ref)
    for warning in profile["warnings"]:
        say(f"warning: {warning}")

    eos = base_meta["eos_token_ids"]
    scoring = dict(eos_token_ids=eos, context_length=context, answer_limit=cfg.answer_limit,
                   max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    say(f"scoring the base on {len(held)} evaluation rows ...")
    base_scores = score(model, tokenizer, held, **scoring)

    checkpoint_dir = cfg.checkpoint_dir or (settings.runs_dir / f"llm-{name}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    peft_model = attach_lora(model, cfg)
    say(f"fine-tuning {len(fit_enc)} conversations (max_length {max_length}) for up to {cfg.epochs} epochs ...")
    fit = fit_lora(peft_model, cfg, fit_enc, val_enc, pad_id=pad, run_key=cfg.run_key(data_sha256, base.ref),
                   checkpoint_dir=checkpoint_dir, progress=progress, on_step=on_step)

    build = registry.incoming_dir()
    try:
        with quiet_transformers(progress=False):
            fit.model.save_pretrained(build / "adapter")
        prompts = [sft_data.prompt_ids(tokenizer, c) for c in held.prompts()[:cfg.speed_prompts]]
        adapter_speed = decode_speed(fit.model, prompts, cfg.speed_tokens) if prompts else None
        merged = fit.model.merge_and_unload().eval()
        merged_speed = decode_speed(merged, prompts, cfg.speed_tokens) if prompts else None
        say(f"scoring the fine-tuned model on {len(held)} evaluation rows ...")
        scores = score(merged, tokenizer, held, **scoring)
        paid, reason = verdict(scores, base_scores)
        serving = _serving(adapter_speed, merged_speed, cfg)
        with quiet_transformers(progress=False):
            merged.save_pretrained(build)
            tokenizer.save_pretrained(build)
        lora = {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout,
                "target_modules": cfg.target_modules, "trainable_parameters": fit.trainable_parameters}
        fit_info = {"epochs_run": fit.state.epoch, "steps": fit.state.step, "best_epoch": fit.state.best_epoch,
                    "best_val_loss": _r(fit.state.best_val_loss), "stopped_early": fit.stopped_early,
                    "resumed_at_step": fit.resumed_at_step, "samples_per_s": round(fit.samples_per_s, 2),
                    "tokens_per_s": round(fit.tokens_per_s, 1), "train_seconds": round(fit.state.train_seconds, 1),
                    "train_cpu_seconds": round(fit.state.train_cpu_seconds, 1),
                    "peak_memory_mb": round(fit.peak_memory_mb, 1), "device": str(next(merged.parameters()).device)}
        data_info = {"train": str(train_all.source), "eval": eval_source, "data_sha256": data_sha256,
                     "eval_sha256": held.fingerprint(), "train_rows": len(fit_enc), "validation_rows":
                     len(val_enc) if val_enc is not None else 0, "eval_rows": len(held), "left_out_too_long": left_out,
                     "max_length": max_length}
        meta = {**describe(merged, tokenizer), "source": "finetune", "gguf_file": None,
                "base_model": cfg.base_model, "conversion_seconds": 0.0}
        meta["eos_token_ids"] = list(dict.fromkeys([*eos, *meta["eos_token_ids"]]))
        meta["finetune"] = {"method": "lora", "base_model": cfg.base_model, "base": base.ref, "merged": True,
                            "adapter": "adapter", "chat_template_added": added_template, "lora": lora,
                            "data_sha256": data_sha256}
        figures = {"perplexity": scores["perplexity"], "token_f1": scores["token_f1"],
                   "exact_match": scores["exact_match"], "base_perplexity": base_scores["perplexity"],
                   "base_token_f1": base_scores["token_f1"], "base_exact_match": base_scores["exact_match"],
                   "paid": paid}
        charts = {}
        if training_curves_png(fit.state.history, build / "training_curves.png"):
            charts["training curves"] = "training_curves.png"
        samples = _samples(base_scores, scores, cfg.sample_answers)
        card = finetune_card(name=name, base=base.ref, meta=meta, scores=scores, base_scores=base_scores,
                             paid=paid, reason=reason, profile=profile, fit=fit_info, lora=lora, serving=serving,
                             data=data_info, config=cfg.to_dict(), samples=samples, charts=charts)
        (build / "card.md").write_text(card, encoding="utf-8")
        (build / "profile.json").write_text(json.dumps(profile, ensure_ascii=False, indent=1, default=str))
        (build / "history.json").write_text(json.dumps(fit.state.history))
        stored = {**figures, "reason": reason, "eval": _without_answers(scores), "base": _without_answers(base_scores),
                  "fit": fit_info, "lora": lora, "serving": serving, "data": data_info, "config": cfg.to_dict(),
                  "samples": samples}
        (build / "metrics.json").write_text(json.dumps(stored, ensure_ascii=False, indent=1, default=str))
        (build / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        row = registry.register(name, build, family=FAMILY, format=FORMAT, base_model=cfg.base_model, labels=[],
                                multi_label=False, metrics=figures, data_sha256=data_sha256,
                                eval_sha256=data_info["eval_sha256"], parent_id=base.row.id if base.row else None)
    finally:
        if build.exists():  # not moved into place: a half-written version
            shutil.rmtree(build, ignore_errors=True)
    if cfg.checkpoint_dir is None:  # our own scratch checkpoints: the registered version supersedes them
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    folder = registry.path(row)
    return {"name": name, "version": row.version, "stage": row.stage, "family": FAMILY, "base_model": cfg.base_model,
            "base": base.ref, "parent_id": row.parent_id, "data_sha256": data_sha256, **figures, "reason": reason,
            "eval": _without_answers(scores), "base_eval": _without_answers(base_scores), "fit": fit_info,
            "lora": lora, "serving": serving, "profile_warnings": profile["warnings"], "samples": samples,
            "data": data_info, "path": str(folder), "card": str(folder / "card.md"),
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _check_name_is_generative(registry: Registry, name: str) -> None:
    from modelshop.llm.registry import is_generative

    rows = registry.list(name)
    if rows and not is_generative(rows[-1]):
        raise ValidationError(f'model name "{name}" belongs to a classifier ({rows[-1].family}); '
                              "pick another name for the fine-tuned model")


def _serving(adapter: dict | None, merged: dict | None, cfg: FinetuneConfig) -> dict:
    """Decode speed with the adapter on the base and merged into it; the version serves merged."""
    out = {"served": "merged", "adapter_tokens_per_s": adapter and adapter["tokens_per_s"],
           "merged_tokens_per_s": merged and merged["tokens_per_s"], "tokens": cfg.speed_tokens,
           "prompts": cfg.speed_prompts, "same_greedy_tokens": None}
    if adapter and merged:
        out["faster"] = "merged" if merged["tokens_per_s"] >= adapter["tokens_per_s"] else "adapter"
        out["speedup"] = round(merged["tokens_per_s"] / adapter["tokens_per_s"], 3) if adapter["tokens_per_s"] else None
        out["same_greedy_tokens"] = adapter["tokens"] == merged["tokens"]
    return out


def _samples(base: dict, tuned: dict, n: int) -> list[dict]:
    return [{"question": t["question"], "reference": t["reference"], "base": b["answer"], "fine_tuned": t["answer"]}
            for b, t in zip(base["answers"][:n], tuned["answers"][:n])]


def _without_answers(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "answers"}


def _r(x: float | None) -> float | None:
    return round(x, 5) if x is not None else None
