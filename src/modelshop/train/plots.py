"""PNG charts of a run: confusion matrix and training curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def confusion_matrix_png(cm: dict, path: Path, title: str = "Confusion matrix") -> Path | None:
    if "matrix" not in cm:  # multi-label: one 2×2 per label; a bar chart of F1 says more
        return None
    labels, m = cm["labels"], np.array(cm["matrix"])
    size = max(4.0, 0.6 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = m.max() if m.size else 0
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if top and m[i, j] > top / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def training_curves_png(history: dict, path: Path) -> Path:
    """Training loss by step and validation macro-F1 by epoch."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = history.get("loss", [])
    if steps:
        xs = [s["step"] for s in steps]
        ys = np.array([s["loss"] for s in steps])
        a.plot(xs, ys, alpha=0.35, label="loss")
        k = max(1, len(ys) // 20)
        if len(ys) >= k:
            smooth = np.convolve(ys, np.ones(k) / k, mode="valid")
            a.plot(xs[k - 1:], smooth, label=f"mean of {k}")
        a.legend()
    a.set_title("training loss")
    a.set_xlabel("step")
    epochs = history.get("epochs", [])
    if epochs:
        b.plot([e["epoch"] for e in epochs], [e["val_macro_f1"] for e in epochs], marker="o")
    b.set_title("validation macro-F1")
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
