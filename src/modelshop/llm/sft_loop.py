"""The LoRA fine-tuning loop for causal LMs, written out in full as the classifier's loop is.

`peft` puts low-rank adapters on the chosen linear layers and freezes everything else, so the
optimizer holds a few million numbers rather than the model. `accelerate` owns the device, mixed
precision and gradient accumulation. Batches group conversations of similar length (little padding:
the lever on short FAQ answers), reshuffled each epoch from the seed. The loss is the model's own
cross-entropy over the label tokens, which `sft_data` set to the answers only.

Checkpoints hold the adapter, the optimizer, the schedule, torch's random state and where the loop
stands (epoch, batches done in it), written atomically at each epoch's end and every
`checkpoint_steps` batches: a run stopped anywhere resumes at the batch after its last checkpoint and
ends as the uninterrupted run would have (the resume test holds them equal). A checkpoint carries
the key of its run (data, base model, options) and refuses to resume a different one.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import parse_flag_from_env, set_seed
from tqdm.auto import tqdm

from modelshop.errors import ValidationError
from modelshop.llm.evaluate import answer_nll
from modelshop.llm.sft_data import IGNORE, Encoded

if TYPE_CHECKING:
    from modelshop.llm.finetune import FinetuneConfig

LAST, BEST = "last.pt", "best.pt"
OnStep = Callable[[int, float], None]


def cpu_only() -> bool:
    """Train on the CPU when asked (`ACCELERATE_USE_CPU`) or when there is no accelerator."""
    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()


def mixed_precision(choice: str) -> str:
    """What "auto" means here: bf16 (else fp16) on a GPU; bf16 on a CPU with bf16 instructions (AVX512-BF16 or
    AMX: a LoRA step takes half the time of fp32 on such a 2-core machine, measured); fp32 otherwise."""
    if choice != "auto":
        return choice
    if not cpu_only() and torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "no"


def cpu_has_bf16() -> bool:
    # torch.cpu's probes are private; a torch without them is treated as a CPU without bf16
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and probe() for probe in probes)


def attach_lora(model, cfg: FinetuneConfig):
    """`model` wrapped by peft with fresh adapters (seeded), only they trainable."""
    from peft import LoraConfig, get_peft_model

    set_seed(cfg.seed)
    targets = cfg.target_modules if isinstance(cfg.target_modules, str) else list(cfg.target_modules)
    config = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=targets, bias="none", task_type="CAUSAL_LM")
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    try:
        return get_peft_model(model, config)
    except ValueError as e:  # target modules that are not in this architecture
        raise ValidationError(f"target_modules: {str(e).splitlines()[0]}; use all-linear or this model's layer "
                              "names (e.g. q_proj, v_proj for Llama and Qwen2, c_attn for GPT-2)") from None


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int, group: bool) -> list[list[int]]:
    """One epoch's batches: shuffled from (seed, epoch); with `group`, sorted by length within windows of
    50 batches, so a batch pads little, and the batches shuffled again."""
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if group:
        window = batch_size * 50
        idx = [i for s in range(0, len(idx), window) for i in sorted(idx[s:s + window], key=lambda i: -lengths[i])]
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(enc: Encoded, idx: list[int], pad_id: int, device) -> dict[str, torch.Tensor]:
    """Right-padded to the batch's longest; padding carries no loss."""
    width = max(len(enc.input_ids[i]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for r, i in enumerate(idx):
        n = len(enc.input_ids[i])
        ids[r, :n] = torch.tensor(enc.input_ids[i])
        labels[r, :n] = torch.tensor(enc.labels[i])
        mask[r, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}


@dataclass
class LoopState:
    """Where a run stands; saved in every checkpoint."""

    epoch: int = 0              # epochs finished
    batch: int = 0              # batches done in the current epoch
    step: int = 0               # batches done in all
    seen: int = 0               # conversations trained on
    tokens: int = 0             # tokens trained on (padding excluded)
    train_seconds: float = 0.0  # time in training steps, validation excluded
    train_cpu_seconds: float = 0.0  # CPU time of this process in those steps: a figure other work sharing the
    #                                 cores changes less than the wall time
    best_val_loss: float | None = None
    best_epoch: int = 0
    stale: int = 0              # epochs since the best validation loss
    history: dict = field(default_factory=lambda: {"loss": [], "epochs": []})


@dataclass
class FitResult:
    model: torch.nn.Module      # the peft model with the best adapter loaded, in eval mode
    state: LoopState
    samples_per_s: float
    tokens_per_s: float
    peak_memory_mb: float
    trainable_parameters: int
    stopped_early: bool
    resumed_at_step: int | None


def fit_lora(model, cfg: FinetuneConfig, train: Encoded, val: Encoded | None, *, pad_id: int, run_key: str,
             checkpoint_dir: Path | None, progress: bool = True, on_step: OnStep | None = None) -> FitResult:
    """Train the adapters of peft `model` on `train`; early stopping on the validation answers' loss."""
    from peft import get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import get_linear_schedule_with_warmup

    # accelerate keeps its precision in process-wide state, fixed by the first Accelerator: one process
    # may train several models in turn (the demo, a test session, a classifier after a LoRA run in bf16)
    AcceleratorState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              mixed_precision=mixed_precision(cfg.mixed_precision), cpu=cpu_only())
    set_seed(cfg.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = math.ceil(per_epoch / cfg.gradient_accumulation_steps) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    device = accelerator.device

    state, best, resumed = LoopState(), None, None
    if cfg.resume:
        state, best = _resume(checkpoint_dir, run_key, model, optimizer, scheduler)
        resumed = state.step
    lengths = train.lengths
    seen0, tokens0, seconds0 = state.seen, state.tokens, state.train_seconds
    stopped_early = False
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for epoch in range(state.epoch, cfg.epochs):
        batches = epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, cfg.group_by_length)
        bar = tqdm(total=len(batches), initial=state.batch, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   leave=False, disable=not progress, dynamic_ncols=True)
        model.train()
        for idx in batches[state.batch:]:
            started, cpu = time.perf_counter(), time.process_time()
            batch = collate(train, idx, pad_id, device)
            with accelerator.accumulate(model):
                loss = model(**batch, use_cache=False).loss   # no key/value cache to build in training
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(trainable, cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            value = loss.item()
            state.train_seconds += time.perf_counter() - started
            state.train_cpu_seconds += time.process_time() - cpu
            state.batch += 1
            state.step += 1
            state.seen += len(idx)
            state.tokens += int(batch["attention_mask"].sum())
            state.history["loss"].append({"step": state.step, "epoch": round(epoch + state.batch / len(batches), 3),
                                          "loss": round(value, 5)})
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}")
            if checkpoint_dir and cfg.checkpoint_steps and state.step % cfg.checkpoint_steps == 0:
                _save(checkpoint_dir / LAST, run_key, model, optimizer, scheduler, state)
            if on_step:
                on_step(state.step, value)
        bar.close()
        val_loss = None
        if val is not None and len(val):
            nll, count = answer_nll(accelerator.unwrap_model(model), val, pad_id=pad_id, batch_size=cfg.batch_size)
            val_loss = nll / count if count else None
        state.epoch, state.batch = epoch + 1, 0
        state.history["epochs"].append({"epoch": epoch + 1, "val_loss": _round(val_loss),
                                        "train_loss": _epoch_mean(state.history["loss"], epoch),
                                        "train_seconds": round(state.train_seconds, 1)})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: training loss {state.history['epochs'][-1]['train_loss']}"
                       + (f", validation loss {val_loss:.4f}" if val_loss is not None else ""))
        if val_loss is None or state.best_val_loss is None or val_loss < state.best_val_loss:
            state.best_val_loss, state.best_epoch, state.stale = val_loss, epoch + 1, 0
            best = _adapter(get_peft_model_state_dict(accelerator.unwrap_model(model)))
            if checkpoint_dir:
                _atomic_save(best, checkpoint_dir / BEST)
        else:
            state.stale += 1
        if checkpoint_dir:
            _save(checkpoint_dir / LAST, run_key, model, optimizer, scheduler, state)
        if cfg.early_stopping_patience and val_loss is not None and state.stale >= cfg.early_stopping_patience:
            stopped_early = epoch + 1 < cfg.epochs
            if progress and stopped_early:
                tqdm.write(f"early stopping: no better validation loss for {state.stale} epochs")
            break
    final = accelerator.unwrap_model(model)
    if best is not None:
        set_peft_model_state_dict(final, best)
    final.eval()
    seconds = state.train_seconds - seconds0
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else _rss_peak_mb()
    return FitResult(model=final, state=state, samples_per_s=(state.seen - seen0) / seconds if seconds else 0.0,
                     tokens_per_s=(state.tokens - tokens0) / seconds if seconds else 0.0, peak_memory_mb=peak,
                     trainable_parameters=sum(p.numel() for p in trainable), stopped_early=stopped_early,
                     resumed_at_step=resumed)


def _resume(folder: Path | None, run_key: str, model, optimizer, scheduler) -> tuple[LoopState, dict | None]:
    from peft import set_peft_model_state_dict

    path = folder / LAST if folder else None
    if path is None or not path.is_file():
        raise ValidationError(f"nothing to resume in {folder}: no checkpoint there; run without --resume")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob["run_key"] != run_key:
        raise ValidationError(f"the checkpoint in {folder} is of another run (other data, base model or options); "
                              "resume with the same ones, or run without --resume to start afresh")
    set_peft_model_state_dict(model, blob["adapter"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["rng"]["torch"])
    if torch.cuda.is_available() and blob["rng"].get("cuda"):
        torch.cuda.set_rng_state_all(blob["rng"]["cuda"])
    best_path = folder / BEST
    best = torch.load(best_path, map_location="cpu", weights_only=True) if best_path.is_file() else None
    return LoopState(**blob["state"]), best


def _save(path: Path, run_key: str, model, optimizer, scheduler, state: LoopState) -> None:
    from peft import get_peft_model_state_dict

    rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    _atomic_save({"run_key": run_key, "adapter": _adapter(get_peft_model_state_dict(model)),
                  "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                  "state": asdict(state)}, path)


def _atomic_save(obj, path: Path) -> None:
    """Written beside and renamed into place: a run killed while saving keeps its previous checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _adapter(state: dict) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _epoch_mean(losses: list[dict], epoch: int) -> float | None:
    values = [x["loss"] for x in losses if epoch < x["epoch"] <= epoch + 1]
    return round(sum(values) / len(values), 5) if values else None


def _round(x: float | None) -> float | None:
    return round(x, 5) if x is not None else None


def _rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
