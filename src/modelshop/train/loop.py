"""Fine-tuning a BERT-family model for text classification: the loop, written out in full.

`accelerate` owns devices, mixed precision, gradient accumulation and distribution, so the same
code runs on a CPU, a GPU, or many under `accelerate launch` / `torchrun`. Speed on short texts
comes from tokenising once, dynamic padding and length-grouped batches (little padding waste).
Checkpoints are written after every epoch; `resume` continues from the last one.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from sklearn.metrics import f1_score
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from modelshop.inference.base import probabilities
from modelshop.train.base_models import load_pretrained
from modelshop.train.config import TrainConfig
from modelshop.train.processes import cpu_only

CHECKPOINT_STATE = "trainer_state.json"


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of similar-length examples: shuffle, sort within mega-batches, chunk, shuffle
    (the short last chunk, if any, stays last)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, group: bool = True) -> None:
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        rng = random.Random(self.seed + self.epoch)
        idx = list(range(len(self.lengths)))
        rng.shuffle(idx)
        if self.group:
            mega = self.batch_size * 50
            idx = [i for s in range(0, len(idx), mega)
                   for i in sorted(idx[s:s + mega], key=lambda i: -self.lengths[i])]
        batches = [idx[s:s + self.batch_size] for s in range(0, len(idx), self.batch_size)]
        # The one short batch stays last: sharding over N processes (accelerate's BatchSamplerShard)
        # hands out batches N at a time and skips a round with a short batch anywhere but the end.
        tail = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        rng.shuffle(batches)
        return iter(batches + tail)

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


@dataclass
class Encoded:
    input_ids: list[list[int]]
    targets: torch.Tensor   # class ids (single-label) or multi-hot floats (multi-label)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, texts: list[str], labels: list, label_names: list[str], multi_label: bool,
           max_length: int) -> Encoded:
    ids = tokenizer(list(texts), truncation=True, max_length=max_length, return_attention_mask=False,
                    return_token_type_ids=False)["input_ids"]
    index = {lab: i for i, lab in enumerate(label_names)}
    if multi_label:
        targets = torch.zeros(len(texts), len(label_names))
        for r, labs in enumerate(labels):
            targets[r, [index[lab] for lab in labs]] = 1.0
    else:
        targets = torch.tensor([index[y] for y in labels], dtype=torch.long)
    return Encoded(ids, targets)


def collate(pad_id: int, enc: Encoded, batch: list[int]) -> dict[str, torch.Tensor]:
    """Pad a batch to its own longest example (dynamic padding)."""
    width = max(len(enc.input_ids[i]) for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, i in enumerate(batch):
        seq = enc.input_ids[i]
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": enc.targets[batch]}


class _Collator:
    def __init__(self, pad_id: int, enc: Encoded) -> None:
        self.pad_id, self.enc = pad_id, enc

    def __call__(self, batch):
        # DataLoader with a batch_sampler hands over the items of the batch; ours are indices
        return collate(self.pad_id, self.enc, list(batch))


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def class_weight_tensor(targets: torch.Tensor, num_labels: int, multi_label: bool) -> torch.Tensor:
    """Inverse-frequency ('balanced') weights, as scikit-learn computes them."""
    if multi_label:
        pos = targets.sum(0).clamp(min=1)
        return ((len(targets) - pos) / pos).clamp(max=50.0)  # pos_weight for BCE
    counts = torch.bincount(targets, minlength=num_labels).float().clamp(min=1)
    return len(targets) / (num_labels * counts)


@dataclass
class FitResult:
    model: torch.nn.Module
    tokenizer: object
    history: dict = field(default_factory=dict)
    best_val_macro_f1: float = 0.0
    best_epoch: int = 0
    samples_per_s: float = 0.0
    train_seconds: float = 0.0
    peak_memory_mb: float = 0.0


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


@torch.inference_mode()
def predict_logits(model, pad_id: int, enc: Encoded, batch_size: int, device) -> np.ndarray:
    """Logits in input order, computed in length-sorted batches."""
    model.eval()
    order = sorted(range(len(enc)), key=lambda i: len(enc.input_ids[i]))
    out = None
    for s in range(0, len(order), batch_size):
        idx = order[s:s + batch_size]
        batch = collate(pad_id, enc, idx)
        batch.pop("labels")
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
        if out is None:
            out = np.zeros((len(enc), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def val_macro_f1(logits: np.ndarray, enc: Encoded, multi_label: bool, threshold: float) -> float:
    if multi_label:
        pred = (probabilities(logits, True) >= threshold).astype(int)
        return float(f1_score(enc.targets.numpy().astype(int), pred, average="macro", zero_division=0))
    return float(f1_score(enc.targets.numpy(), logits.argmax(1), average="macro", zero_division=0))


def fit_transformer(cfg: TrainConfig, train: tuple[list[str], list], val: tuple[list[str], list] | None,
                    label_names: list[str], multi_label: bool, max_length: int, *,
                    balanced: bool, progress: bool = True) -> FitResult:
    """Fine-tune `cfg.base_model`; returns the model with the best validation macro-F1 loaded."""
    # accelerate keeps its precision in process-wide state, fixed by the first Accelerator: one process
    # may train several models in turn (the demo, a test session, a classifier after a LoRA run in bf16)
    AcceleratorState._reset_state()
    accelerator = Accelerator(gradient_accumulation_steps=cfg.gradient_accumulation_steps,
                              mixed_precision=_mixed_precision(cfg.mixed_precision), cpu=cpu_only())
    set_seed(cfg.seed)
    id2label = dict(enumerate(label_names))
    tokenizer, model = load_pretrained(
        cfg.base_model, num_labels=len(label_names), id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        problem_type="multi_label_classification" if multi_label else "single_label_classification")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_enc = encode(tokenizer, *train, label_names, multi_label, max_length)
    val_enc = encode(tokenizer, *val, label_names, multi_label, max_length) if val and val[0] else None

    sampler = LengthGroupedBatches([len(x) for x in train_enc.input_ids], cfg.batch_size, cfg.seed,
                                   group=cfg.group_by_length)
    loader = DataLoader(_Indices(len(train_enc)), batch_sampler=sampler, collate_fn=_Collator(pad_id, train_enc))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    params = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)],
         "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    steps_per_epoch = math.ceil(len(loader) / cfg.gradient_accumulation_steps)
    total = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    weights = class_weight_tensor(train_enc.targets, len(label_names), multi_label).to(accelerator.device) \
        if balanced else None
    loss_fn = (torch.nn.BCEWithLogitsLoss(pos_weight=weights) if multi_label
               else torch.nn.CrossEntropyLoss(weight=weights))

    history: dict = {"loss": [], "epochs": []}
    best_f1, best_epoch, best_state, stale, start_epoch, step = -1.0, 0, None, 0, 0, 0
    ckpt = cfg.checkpoint_dir
    if cfg.resume and ckpt and (ckpt / "last" / CHECKPOINT_STATE).is_file():
        state = json.loads((ckpt / "last" / CHECKPOINT_STATE).read_text())
        accelerator.load_state(str(ckpt / "last"))
        history, best_f1, best_epoch, stale = state["history"], state["best_f1"], state["best_epoch"], state["stale"]
        start_epoch, step = state["epoch"] + 1, state["step"]
        if (ckpt / "best.pt").is_file():
            best_state = torch.load(ckpt / "best.pt", map_location="cpu")

    seen, t0 = 0, time.perf_counter()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        model.train()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False,
                   disable=not (progress and accelerator.is_local_main_process), dynamic_ncols=True)
        for batch in bar:
            with accelerator.accumulate(model):
                targets = batch.pop("labels")
                logits = model(**batch).logits
                loss = loss_fn(logits.float(), targets)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            step += 1
            seen += len(targets) * accelerator.num_processes
            history["loss"].append({"step": step, "loss": round(loss.item(), 5)})
            bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.close()
        f1 = None
        if val_enc is not None:
            logits = predict_logits(accelerator.unwrap_model(model), pad_id, val_enc, cfg.batch_size * 2,
                                    accelerator.device)
            f1 = val_macro_f1(logits, val_enc, multi_label, cfg.threshold)
        history["epochs"].append({"epoch": epoch + 1, "val_macro_f1": round(f1, 4) if f1 is not None else None,
                                  "seconds": round(time.perf_counter() - t0, 1)})
        if progress and accelerator.is_local_main_process:
            shown = f"{f1:.4f}" if f1 is not None else "n/a"
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: validation macro-F1 {shown}")
        if f1 is None or f1 > best_f1:
            best_f1, best_epoch, stale = (f1 if f1 is not None else 0.0), epoch + 1, 0
            best_state = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            if ckpt and accelerator.is_main_process:
                ckpt.mkdir(parents=True, exist_ok=True)
                torch.save(best_state, ckpt / "best.pt")
        else:
            stale += 1
        if ckpt:
            accelerator.save_state(str(ckpt / "last"))
            if accelerator.is_main_process:
                (ckpt / "last" / CHECKPOINT_STATE).write_text(json.dumps(
                    {"epoch": epoch, "step": step, "best_f1": best_f1, "best_epoch": best_epoch,
                     "stale": stale, "history": history}))
        if cfg.early_stopping_patience and val_enc is not None and stale >= cfg.early_stopping_patience:
            if progress and accelerator.is_local_main_process:
                tqdm.write(f"early stopping: no better validation macro-F1 for {stale} epochs")
            break
    seconds = time.perf_counter() - t0
    accelerator.wait_for_everyone()
    final = copy.deepcopy(accelerator.unwrap_model(model)).cpu()
    if best_state is not None:
        final.load_state_dict(best_state)
    final.eval()
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else _rss_peak_mb()
    return FitResult(model=final, tokenizer=tokenizer, history=history, best_val_macro_f1=max(best_f1, 0.0),
                     best_epoch=best_epoch, samples_per_s=seen / seconds if seconds else 0.0,
                     train_seconds=seconds, peak_memory_mb=peak)


def _rss_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

