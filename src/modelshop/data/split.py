"""`stratified_split`: a seeded train/test split that keeps each label's share in both parts.

Strata: the label for single-label data; for multi-label data the row's rarest label (so rare
labels reach the test set; rows without labels form their own stratum); one stratum for
unlabelled data, i.e. a seeded random split. Each stratum gives its share of the test set
(largest remainders fill the rounding gap). A stratum with a single row stays in train, so rare
classes never crash the split (the test part then holds no example of them), unless every
stratum is a single row and the test part would otherwise be empty.
Both parts keep the original row order; the same seed gives the same split on every run.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

from modelshop.errors import ValidationError

from .dataset import Dataset


def stratified_split(ds: Dataset, test_size: float = 0.2, seed: int = 42) -> tuple[Dataset, Dataset]:
    """(train, test), with about `test_size` of the rows in test."""
    if not isinstance(test_size, (int, float)) or not 0 < test_size < 1:
        raise ValidationError(f"test_size must be a fraction between 0 and 1 (e.g. 0.2), got {test_size!r}")
    if len(ds) < 2:
        raise ValidationError(f"cannot split {len(ds)} row(s); a train/test split needs at least 2 rows")
    strata: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(_strata(ds)):
        strata[key].append(i)
    target = min(len(ds) - 1, max(1, round(len(ds) * test_size)))
    rng = random.Random(seed)
    shares: dict[str, int] = {}
    remainders: list[tuple[float, float, str]] = []
    for key in sorted(strata):
        rows = strata[key]
        rng.shuffle(rows)
        exact = len(rows) * test_size
        shares[key] = min(math.floor(exact), len(rows) - 1)
        remainders.append((exact - shares[key], rng.random(), key))
    missing = target - sum(shares.values())
    # Largest remainder first; never take a stratum's last row while another stratum can give one.
    for _, _, key in sorted(remainders, reverse=True):
        if missing <= 0:
            break
        if shares[key] < len(strata[key]) - 1:
            shares[key] += 1
            missing -= 1
    for _, _, key in sorted(remainders, reverse=True):
        if missing <= 0:
            break
        if shares[key] < len(strata[key]):
            shares[key] += 1
            missing -= 1
    test = sorted(i for key, rows in strata.items() for i in rows[:shares[key]])
    chosen = set(test)
    train = [i for i in range(len(ds)) if i not in chosen]
    return ds.subset(train), ds.subset(test)


def _strata(ds: Dataset) -> list[str]:
    if not ds.labels:
        return [""] * len(ds)
    if not ds.multi_label:
        return list(ds.labels)
    counts = Counter(lab for row in ds.labels for lab in row)
    return [min(row, key=lambda lab: (counts[lab], lab)) if row else "" for row in ds.labels]
