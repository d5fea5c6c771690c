"""Repeated text inside a dataset and between a train and an eval dataset.

Three levels of "the same text", each reported separately:

    exact       equal after `normalize_text` (unicode NFKC, whitespace)
    normalized  equal after `match_key` (also case and punctuation ignored)
    near        character 3-gram Jaccard ≥ 0.8 by MinHash/LSH (see `near`)

Near-duplicate pairs are counted between distinct texts, so an exact duplicate is never also
counted as a near one. Every function returns plain JSON-ready dicts with a few examples.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from .dataset import Dataset
from .near import pairs_from_signatures, signatures
from .normalize import fold, normalize_text

EXAMPLES = 5
SNIPPET = 160
NEAR_THRESHOLD = 0.8


def snippet(text: str) -> str:
    return text if len(text) <= SNIPPET else text[:SNIPPET - 1] + "…"


def exact_groups(texts: list[str]) -> dict[str, list[int]]:
    """Normalised text → the rows holding it, in row order (first occurrence first)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(texts):
        groups[normalize_text(text)].append(i)
    return groups


def exact_duplicates(groups: dict[str, list[int]], texts: list[str]) -> dict:
    repeated = [rows for rows in groups.values() if len(rows) > 1]
    repeated.sort(key=len, reverse=True)
    return {
        "count": sum(len(rows) - 1 for rows in repeated),  # rows that repeat an earlier row
        "texts": len(repeated),
        "examples": [{"text": snippet(texts[rows[0]]), "copies": len(rows), "rows": rows[:10]}
                     for rows in repeated[:EXAMPLES]],
    }


@dataclass
class KeyIndex:
    """The distinct match keys of a dataset with their MinHash signatures, computed once."""

    keys: list[str]  # distinct non-empty match keys, first seen first
    rows: list[list[int]]  # per key: the first row of each exact group that has this key
    sigs: np.ndarray

    @classmethod
    def build(cls, groups: dict[str, list[int]]) -> KeyIndex:
        by_key: dict[str, list[int]] = defaultdict(list)
        for norm, rows in groups.items():
            key = fold(norm)
            if key:
                by_key[key].append(rows[0])
        keys = list(by_key)
        return cls(keys, list(by_key.values()), signatures(keys))


def near_duplicates(index: KeyIndex, texts: list[str]) -> dict:
    pairs: list[tuple[int, int, float]] = []
    for rows in index.rows:  # same letters and digits, different punctuation, case or spacing
        pairs.extend((a, b, 1.0) for a, b in combinations(rows, 2))
    for i, j, sim in pairs_from_signatures(index.sigs, NEAR_THRESHOLD):
        pairs.append((index.rows[i][0], index.rows[j][0], sim))
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return {
        "count": len(pairs),
        "rows": len({row for a, b, _ in pairs for row in (a, b)}),
        "threshold": NEAR_THRESHOLD,
        "examples": [{"a": snippet(texts[a]), "b": snippet(texts[b]), "rows": [a, b],
                      "similarity": round(sim, 3)} for a, b, sim in pairs[:EXAMPLES]],
    }


def conflicting_labels(groups: dict[str, list[int]], ds: Dataset) -> dict:
    if not ds.labels:
        return {"count": 0, "rows": 0, "examples": []}
    found = []
    for rows in groups.values():
        seen = {_label_text(ds.labels[i]) for i in rows}
        if len(seen) > 1:
            found.append((rows, sorted(seen)))
    found.sort(key=lambda item: len(item[0]), reverse=True)
    return {
        "count": len(found),  # distinct texts carrying more than one label
        "rows": sum(len(rows) for rows, _ in found),
        "examples": [{"text": snippet(ds.texts[rows[0]]), "labels": labels, "rows": rows[:10]}
                     for rows, labels in found[:EXAMPLES]],
    }


def leakage(train: Dataset, eval_ds: Dataset, groups: dict[str, list[int]], index: KeyIndex) -> dict:
    """Eval rows that also occur in train: exactly, normalised, or as near duplicates."""
    train_rows = {key: rows[0] for key, rows in zip(index.keys, index.rows)}
    kinds: dict[int, tuple[str, int]] = {}  # eval row → (kind, a train row it matches)
    pending: dict[str, list[int]] = defaultdict(list)  # eval match key → eval rows not matched yet
    for i, text in enumerate(eval_ds.texts):
        norm = normalize_text(text)
        key = fold(norm)
        if norm in groups:
            kinds[i] = ("exact", groups[norm][0])
        elif key in train_rows:
            kinds[i] = ("normalized", train_rows[key])
        elif key:
            pending[key].append(i)
    eval_keys = list(pending)
    if eval_keys:
        sigs = np.concatenate([index.sigs, signatures(eval_keys)])
        side = [0] * len(index.keys) + [1] * len(eval_keys)
        for i, j, _ in pairs_from_signatures(sigs, NEAR_THRESHOLD, groups=side):
            # i < j and the sides differ, so i is a train key and j an eval key
            for row in pending[eval_keys[j - len(index.keys)]]:
                kinds.setdefault(row, ("near", index.rows[i][0]))
    counts = {kind: sum(1 for k, _ in kinds.values() if k == kind) for kind in ("exact", "normalized", "near")}
    examples = [{"kind": kind, "eval_row": row, "train_row": tr, "text": snippet(eval_ds.texts[row]),
                 "train_text": snippet(train.texts[tr])}
                for row, (kind, tr) in sorted(kinds.items())[:EXAMPLES]]
    return {"eval_rows": len(eval_ds), **counts, "rows": len(kinds),
            "rate": round(len(kinds) / len(eval_ds), 4) if len(eval_ds) else 0.0,
            "examples": examples}


def _label_text(label: str | list[str]) -> str:
    return "|".join(label) if isinstance(label, list) else label
