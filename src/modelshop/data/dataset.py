"""The in-memory labelled text dataset every part of modelshop passes around.

Owns the `Dataset` dataclass only: texts, labels (one string per row, or a list of strings per
row when multi-label), where it came from, and a content fingerprint used for lineage
(dataset hash → model). Imports nothing from the rest of modelshop but `errors`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from modelshop.errors import ValidationError


@dataclass
class Dataset:
    """Texts with their labels; `labels` is empty for an unlabelled dataset (`has_labels`)."""

    texts: list[str]
    labels: list[str] | list[list[str]]
    multi_label: bool
    source: str = ""
    text_col: str = "text"
    label_col: str = "label"
    # Human-readable notes from loading (rows dropped, encoding guessed ...); profiles repeat them.
    warnings: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if self.labels and len(self.labels) != len(self.texts):
            raise ValidationError(
                f"dataset has {len(self.texts)} texts but {len(self.labels)} labels; "
                "give one label (or one list of labels) per text"
            )

    @property
    def has_labels(self) -> bool:
        return bool(self.labels) or not self.texts

    @property
    def label_names(self) -> list[str]:
        """Sorted unique labels."""
        if self.multi_label:
            return sorted({lab for row in self.labels for lab in row})
        return sorted(set(self.labels))

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        """SHA-256 hex of the (text, labels) rows in order; stable across runs and machines."""
        digest = hashlib.sha256()
        labels = self.labels if self.labels else [None] * len(self.texts)
        for text, label in zip(self.texts, labels):
            digest.update(json.dumps([text, label], ensure_ascii=False).encode("utf-8"))
            digest.update(b"\n")
        return digest.hexdigest()

    def subset(self, indices: Iterable[int]) -> Dataset:
        """A new dataset with the rows at `indices`, in that order."""
        idx = [int(i) for i in indices]
        return Dataset(
            texts=[self.texts[i] for i in idx],
            labels=[self.labels[i] for i in idx] if self.labels else [],
            multi_label=self.multi_label,
            source=self.source,
            text_col=self.text_col,
            label_col=self.label_col,
        )

    def to_jsonl(self, path: str | Path) -> Path:
        """Write the rows as JSONL with `text` and `label` keys (a list when multi-label)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = self.labels if self.labels else [None] * len(self.texts)
        with path.open("w", encoding="utf-8") as fh:
            for text, label in zip(self.texts, labels):
                row = {"text": text} if label is None else {"text": text, "label": label}
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
