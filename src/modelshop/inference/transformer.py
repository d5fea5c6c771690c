"""The fine-tuned transformer family (PyTorch, safetensors); int8 is dynamic quantisation at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from modelshop.inference.base import Predictor


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
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model.to(self.device)

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
        """Batches of similar length (sorted), so padding wastes little; results in input order."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self.forward(self.encode([texts[i] for i in idx]))
        return out
