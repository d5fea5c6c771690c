"""Speed and accuracy of one predictor on a labelled file, measured the same way for every form."""

from __future__ import annotations

import time

from modelshop.data import Dataset
from modelshop.errors import ValidationError
from modelshop.inference import Predictor
from modelshop.inference.base import probabilities
from modelshop.train.metrics import compute_metrics

BATCH_SIZE = 64  # length-sorted batches of 64: the library's own batch scoring, and the DESIGN figures


def check_labels(predictor: Predictor, ds: Dataset, ref: str) -> None:
    unseen = sorted(set(ds.label_names) - set(predictor.labels))
    if unseen:
        raise ValidationError(f"labels in the eval file not known to {ref}: {', '.join(unseen[:10])}; "
                              f"it knows {', '.join(predictor.labels)}")


def measure(predictor: Predictor, ds: Dataset) -> dict:
    """texts/s over one pass of the whole file (after a warm-up batch), and the quality figures."""
    predictor.logits(ds.texts[:BATCH_SIZE], batch_size=BATCH_SIZE)  # warm-up: first calls allocate
    started = time.perf_counter()
    logits = predictor.logits(ds.texts, batch_size=BATCH_SIZE)
    seconds = time.perf_counter() - started
    metrics = compute_metrics(ds.labels, probabilities(logits, predictor.multi_label), predictor.labels,
                              multi_label=predictor.multi_label,
                              threshold=predictor.meta.get("threshold", 0.5))
    return {"n": len(ds), "texts_per_s": round(len(ds) / seconds, 1), "seconds": round(seconds, 2),
            "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def compare(measured: dict, source: dict) -> dict:
    """The figures a compressed version is judged by: speed-up and macro-F1 points lost."""
    return {"speedup": round(measured["texts_per_s"] / source["texts_per_s"], 2),
            "macro_f1_points_lost": round((source["macro_f1"] - measured["macro_f1"]) * 100, 2)}
