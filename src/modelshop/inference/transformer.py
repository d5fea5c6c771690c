"""The fine-tuned transformer family (PyTorch, safetensors); int8 is dynamic quantisation at load.

Besides the padded `forward`, BERT-style models run *packed* (`forward_packed`), as
text-embeddings-inference does: several inputs share one row, each with its own position ids and a
block-diagonal attention mask, so a batch of short texts of mixed lengths computes almost no padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modelshop.inference.base import Predictor

# Packed rows are at least this many tokens wide (or as wide as the longest input): short rows waste
# little attention on masked-out pairs, and there are few of them.
PACK_WIDTH = 64


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TransformerPredictor(Predictor):
    family = "transformer"

    def __init__(self, path: Path, meta: dict, *, device: str = "cpu", threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.meta = meta
        self.format = meta.get("format", "pytorch")
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.max_length = int(meta.get("max_length") or self.tokenizer.model_max_length)
        self.device = pick_device(device)
        model = AutoModelForSequenceClassification.from_pretrained(path)
        model.eval()
        if self.format == "int8":
            model = quantize_int8(model)
        self.model = model.to(self.device)
        self.packable = packable(model)

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors="pt")

    @torch.inference_mode()
    def forward(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        return self.model(**batch).logits.float().cpu().numpy()

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (sorted), packed where the model allows, else padded (little waste
        either way); results in input order."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            chunk = [texts[i] for i in idx]
            if self.packable:
                enc = self.tokenizer(chunk, truncation=True, max_length=self.max_length,
                                     return_attention_mask=False, return_token_type_ids=False)
                out[idx] = self.forward_packed([(ids, None) for ids in enc["input_ids"]])
            else:
                out[idx] = self.forward(self.encode(chunk))
        return out

    @torch.inference_mode()
    def forward_packed(self, seqs: Sequence[tuple[Sequence[int], Sequence[int] | None]]) -> np.ndarray:
        """Logits for token-id sequences (with special tokens; optional token type ids), packed into rows."""
        lengths = [len(ids) for ids, _ in seqs]
        rows = pack_rows(lengths, max(PACK_WIDTH, max(lengths)))
        width = max(sum(lengths[i] for i in row) for row in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros_like(ids)
        positions = np.zeros_like(ids)
        segment = np.full((len(rows), width), -1, dtype=np.int64)
        cls_row, cls_col, order = [], [], []
        for r, row in enumerate(rows):
            start = 0
            for k, i in enumerate(row):
                seq_ids, seq_types = seqs[i]
                end = start + lengths[i]
                ids[r, start:end] = seq_ids
                if seq_types is not None:
                    types[r, start:end] = seq_types
                positions[r, start:end] = np.arange(lengths[i])
                segment[r, start:end] = k
                cls_row.append(r)
                cls_col.append(start)
                order.append(i)
                start = end
        seg = torch.from_numpy(segment)
        # each token attends to its own input only; padding attends to itself (a row of nothing is NaN)
        mask = (seg[:, :, None] == seg[:, None, :]) & ((seg[:, :, None] >= 0) | torch.eye(width, dtype=torch.bool))
        mask = mask[:, None].to(self.device)
        if self.model.config._attn_implementation != "sdpa":
            mask = torch.zeros(mask.shape, dtype=torch.float32, device=self.device).masked_fill_(
                ~mask, torch.finfo(torch.float32).min)
        base = self.model.base_model
        hidden = base(input_ids=torch.from_numpy(ids).to(self.device), attention_mask=mask,
                      token_type_ids=torch.from_numpy(types).to(self.device),
                      position_ids=torch.from_numpy(positions).to(self.device)).last_hidden_state
        first = hidden[torch.tensor(cls_row), torch.tensor(cls_col)]  # each input's [CLS]
        logits = self.model.classifier(base.pooler.activation(base.pooler.dense(first))).float().cpu().numpy()
        out = np.empty_like(logits)
        out[np.asarray(order)] = logits
        return out


def quantize_int8(model):
    """Dynamic int8 quantisation of every Linear layer (weights int8 now, activations per batch)."""
    import warnings

    with warnings.catch_warnings():  # torch ≥ 2.10 marks its quantized tensors deprecated; they still work
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor", category=UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def packable(model) -> bool:
    """BERT-style classifiers: absolute position ids, a [CLS] pooler and a linear head on it."""
    base = getattr(model, "base_model", None)
    return (getattr(model.config, "model_type", None) == "bert" and type(model).__name__ == "BertForSequenceClassification"
            and getattr(base, "pooler", None) is not None and hasattr(model, "classifier"))


def pack_rows(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Indices into rows of at most `width` tokens: first-fit, longest first (inputs longer than `width`
    get a row of their own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows
