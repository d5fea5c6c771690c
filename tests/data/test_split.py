"""stratified_split: proportions per label, seeds, rare classes, multi-label, bad arguments."""

from __future__ import annotations

from collections import Counter

import pytest

from modelshop.data import Dataset, stratified_split
from modelshop.errors import ValidationError


def _ds(counts: dict[str, int]) -> Dataset:
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    return Dataset(texts=[f"text {i}" for i in range(len(labels))], labels=labels, multi_label=False)


def test_each_label_keeps_its_share() -> None:
    ds = _ds({"a": 50, "b": 30, "c": 20})
    train, test = stratified_split(ds, test_size=0.2, seed=1)
    assert len(test) == 20 and len(train) == 80
    assert Counter(test.labels) == {"a": 10, "b": 6, "c": 4}
    assert sorted(train.texts + test.texts) == sorted(ds.texts)


def test_seeded_and_stable() -> None:
    ds = _ds({"a": 40, "b": 40})
    first = stratified_split(ds, seed=7)[1].texts
    assert stratified_split(ds, seed=7)[1].texts == first
    assert stratified_split(ds, seed=8)[1].texts != first
    assert first == sorted(first, key=lambda t: int(t.split()[1]))  # original order kept


def test_single_example_classes_do_not_crash() -> None:
    ds = _ds({"a": 10, "b": 10, "rare": 1, "rarer": 1})
    train, test = stratified_split(ds, test_size=0.25, seed=0)
    assert "rare" in train.labels and "rare" not in test.labels
    assert len(test) == round(22 * 0.25)
    tiny = _ds({"x": 1, "y": 1, "z": 1})
    train, test = stratified_split(tiny, test_size=0.3)
    assert len(test) == 1 and len(train) == 2


def test_multi_label_uses_rarest_label() -> None:
    labels = [["common"]] * 16 + [["common", "rare"]] * 4
    ds = Dataset(texts=[str(i) for i in range(20)], labels=labels, multi_label=True)
    train, test = stratified_split(ds, test_size=0.25, seed=3)
    assert sum("rare" in row for row in test.labels) == 1
    assert sum("rare" in row for row in train.labels) == 3
    assert len(test) == 5


def test_unlabelled_is_a_random_split() -> None:
    ds = Dataset(texts=[str(i) for i in range(10)], labels=[], multi_label=False)
    train, test = stratified_split(ds, test_size=0.3)
    assert len(test) == 3 and train.labels == []


@pytest.mark.parametrize("size", [0, 1, 1.5, -0.1, "0.2"])
def test_bad_test_size(size: object) -> None:
    with pytest.raises(ValidationError, match="test_size must be a fraction between 0 and 1"):
        stratified_split(_ds({"a": 5}), test_size=size)  # type: ignore[arg-type]


def test_too_small() -> None:
    with pytest.raises(ValidationError, match=r"cannot split 1 row\(s\)"):
        stratified_split(_ds({"a": 1}))
