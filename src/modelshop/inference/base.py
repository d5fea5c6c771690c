"""The `Predictor` interface every model family implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


def probabilities(logits: np.ndarray, multi_label: bool, function: str | None = None) -> np.ndarray:
    """softmax for single-label, sigmoid for multi-label (or the `function` asked for)."""
    function = function or ("sigmoid" if multi_label else "softmax")
    logits = np.asarray(logits, dtype=np.float64)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    if function == "none":
        return logits
    shifted = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


# Models that number positions from the padding id + 1 (RoBERTa's family): that many positions are never used.
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text",
                    "roberta-prelayernorm", "xmod"}
UNSET = 1_000_000  # a tokenizer without a limit says int(1e30)


def input_limit(config, tokenizer) -> int:
    """The longest input, in tokens with the special ones, that a transformer itself can take: its position
    embeddings and its tokenizer's model_max_length, the smaller (512 for BERT)."""
    limits = []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        if getattr(config, "model_type", "") in OFFSET_POSITIONS:
            positions -= (getattr(config, "pad_token_id", None) or 1) + 1
        limits.append(int(positions))
    declared = getattr(tokenizer, "model_max_length", None)
    if declared and declared < UNSET:
        limits.append(int(declared))
    return min(limits) if limits else 512


class Predictor(ABC):
    family: str
    format: str
    labels: list[str]
    multi_label: bool
    max_length: int
    meta: dict

    @abstractmethod
    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text takes (before truncation), for batching budgets and metering."""

    @abstractmethod
    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Raw scores, shape (len(texts), len(labels)); softmax/sigmoid of them are the probabilities."""

    def predict_proba(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        return probabilities(self.logits(texts, batch_size=batch_size), self.multi_label)

    def predict(self, texts: list[str], *, threshold: float = 0.5) -> list[list[str]] | list[str]:
        probs = self.predict_proba(texts)
        if self.multi_label:
            return [[self.labels[j] for j in np.flatnonzero(p >= threshold)] for p in probs]
        return [self.labels[j] for j in probs.argmax(axis=1)]
