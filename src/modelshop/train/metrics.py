"""Evaluation figures with scikit-learn: accuracy, F1s, per-class scores, confusion matrix, ECE, and
accuracy and macro-F1 per language when the evaluation texts are in more than one."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer

from modelshop.errors import ValidationError

# A language needs this many evaluation rows for figures of its own: below 20, one row moves its
# accuracy by more than 5 points, and its macro-F1 over several classes rests on a row or two each.
MIN_LANGUAGE_ROWS = 20


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if confidence.size == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(confidence[mask].mean() - correct[mask].mean())
    return float(ece)


def compute_metrics(y_true: list, probs: np.ndarray, labels: list[str], *, multi_label: bool = False,
                    threshold: float = 0.5, languages: list[str] | None = None) -> dict:
    """All figures for predictions `probs` (n × len(labels)) against gold `y_true`; with `languages`
    (a code per row) also `per_language`, when at least two languages have enough rows."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        mlb = MultiLabelBinarizer(classes=labels)
        truth = mlb.fit_transform(y_true)
        pred = (probs >= threshold).astype(int)
        p, r, f, s = precision_recall_fscore_support(truth, pred, zero_division=0)
        mcm = multilabel_confusion_matrix(truth, pred)
        cm = {"labels": labels, "per_label": {lab: m.tolist() for lab, m in zip(labels, mcm, strict=True)}}
        ece = expected_calibration_error(probs.ravel(), (pred == truth).ravel())
        acc = accuracy_score(truth, pred)
        avg = {k: f1_score(truth, pred, average=k, zero_division=0) for k in ("macro", "micro", "weighted")}
    else:
        index = {lab: i for i, lab in enumerate(labels)}
        truth = np.array([index[y] for y in y_true])
        pred = probs.argmax(axis=1) if len(probs) else np.array([], dtype=int)
        ids = list(range(len(labels)))
        p, r, f, s = precision_recall_fscore_support(truth, pred, labels=ids, zero_division=0)
        cm = {"labels": labels, "matrix": confusion_matrix(truth, pred, labels=ids).tolist()}
        ece = expected_calibration_error(probs.max(axis=1) if len(probs) else probs, pred == truth)
        acc = accuracy_score(truth, pred)
        avg = {k: f1_score(truth, pred, labels=ids, average=k, zero_division=0)
               for k in ("macro", "micro", "weighted")}
    out = {
        "n": int(len(y_true)),
        "accuracy": round(float(acc), 4),
        "macro_f1": round(float(avg["macro"]), 4),
        "micro_f1": round(float(avg["micro"]), 4),
        "weighted_f1": round(float(avg["weighted"]), 4),
        "ece": round(ece, 4),
        "per_class": {
            lab: {"precision": round(float(p[i]), 4), "recall": round(float(r[i]), 4),
                  "f1": round(float(f[i]), 4), "support": int(s[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": cm,
    }
    by_language = per_language(truth, pred, languages, multi_label=multi_label) if languages is not None else None
    if by_language:
        out["per_language"] = by_language
    return out


def per_language(truth: np.ndarray, pred: np.ndarray, languages: list[str], *, multi_label: bool) -> dict | None:
    """{code: {n, accuracy, macro_f1}} for each language with MIN_LANGUAGE_ROWS rows (most rows first), or
    None when fewer than two have them: one language's figures are the overall ones. `truth` and `pred`
    are class indices (single-label) or 0/1 matrices (multi-label), as `compute_metrics` built them.

    Macro-F1 averages over the classes that occur in that language's gold or predicted labels, not all
    classes: a class the language never has (nor is predicted) is not a failure of that language."""
    if len(languages) != len(truth):
        raise ValidationError(f"{len(languages)} languages for {len(truth)} rows; give one code per row")
    codes = np.asarray(languages)
    counts = {c: int(n) for c, n in zip(*np.unique(codes, return_counts=True), strict=True)
              if c != "und" and n >= MIN_LANGUAGE_ROWS}
    if len(counts) < 2:
        return None
    out = {}
    for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        mask = codes == code
        t, p = truth[mask], pred[mask]
        if multi_label:
            cols = np.flatnonzero(t.any(axis=0) | p.any(axis=0))
            macro = f1_score(t[:, cols], p[:, cols], average="macro", zero_division=0) if cols.size else 1.0
        else:
            macro = f1_score(t, p, labels=np.union1d(t, p), average="macro", zero_division=0)
        out[code] = {"n": n, "accuracy": round(float(accuracy_score(t, p)), 4), "macro_f1": round(float(macro), 4)}
    return out


def headline(metrics: dict) -> dict:
    """The figures without the bulky parts, for baselines and summaries."""
    return {k: v for k, v in metrics.items() if k != "confusion_matrix"}
