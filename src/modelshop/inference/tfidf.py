"""The classical TF-IDF + linear model family (scikit-learn), stored with joblib."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np

from modelshop.inference.base import Predictor

PIPELINE_FILE = "tfidf.joblib"


class TfidfPredictor(Predictor):
    family = "tfidf"
    format = "sklearn"

    def __init__(self, path: Path, meta: dict) -> None:
        self.meta = meta
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.max_length = int(meta.get("max_length", 1_000_000))
        self.pipeline = joblib.load(path / PIPELINE_FILE)

    def count_tokens(self, texts: list[str]) -> list[int]:
        analyzer = self.pipeline.named_steps["features"].transformer_list[0][1].build_analyzer()
        return [len(analyzer(t)) for t in texts]

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        return decision_logits(self.pipeline, texts, self.multi_label)


def decision_logits(pipeline, texts: list[str], multi_label: bool) -> np.ndarray:
    """Scores whose softmax (single-label) or sigmoid (multi-label) is the model's probability."""
    scores = np.asarray(pipeline.decision_function(list(texts)), dtype=np.float64)
    if scores.ndim == 1:  # binary logistic regression: p(class 1) = sigmoid(d) = softmax([0, d])
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    return scores
