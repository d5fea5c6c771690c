"""The ONNX Runtime form of a fine-tuned transformer (made by `modelshop optimize --onnx`).

The folder holds `model.onnx` (fp32, or int8 after `onnxruntime.quantization.quantize_dynamic`),
the tokenizer files and `modelshop.json` with format "onnx". The interface is the transformer
predictor's: `.tokenizer`, `.encode()`, `.forward()` and `.input_names`, so the server batches it
the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from modelshop.errors import ValidationError
from modelshop.inference.base import Predictor, input_limit

ONNX_FILE = "model.onnx"


class OnnxPredictor(Predictor):
    family = "transformer"
    format = "onnx"

    def __init__(self, path: Path, meta: dict, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        model_file = path / meta.get("onnx_file", ONNX_FILE)
        if not model_file.is_file():
            raise ValidationError(f"{path} has format onnx but no {model_file.name}; "
                                  "re-run `modelshop optimize --onnx`")
        self.meta = meta
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        config = AutoConfig.from_pretrained(path) if (path / "config.json").is_file() else None
        self.input_limit = input_limit(config, self.tokenizer)  # what the server accepts (see transformer.py)
        self.trained_length = int(meta.get("max_length") or self.input_limit)
        self.max_length = min(self.trained_length, self.input_limit)
        options = ort.SessionOptions()
        # One session per model, called from one thread: all cores go to one batch at a time.
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def count_tokens(self, texts: list[str]) -> list[int]:
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False,
                             return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="np"))

    def forward(self, batch) -> np.ndarray:
        """Logits for a padded batch (numpy arrays or torch tensors, keyed by input name)."""
        feed = {}
        for name in self.input_names:
            value = batch.get(name)
            if value is None and name == "token_type_ids":
                value = np.zeros_like(np.asarray(batch["input_ids"]))
            feed[name] = np.asarray(value, dtype=np.int64)
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Batches of similar length (sorted), so padding wastes little; results in input order."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self.forward(self.encode([texts[i] for i in idx]))
        return out
