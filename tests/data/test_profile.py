"""profile_dataset: every section on small data, leakage, scale, a 1 MB text, the real BBC set."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from modelshop.data import Dataset, load_dataset, profile_dataset
from modelshop.data.near import signatures

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

BASE = "the quick brown fox jumps over the lazy dog near the river bank today"


def _support_ds() -> Dataset:
    rows = [
        (BASE, "animals"),
        (BASE + "!", "animals"),  # normalized duplicate: punctuation only
        (BASE.replace("today", "tonight"), "animals"),  # near duplicate
        ("  my refund   has not arrived  ", "refund"),
        ("my refund has not arrived", "refund"),  # exact after whitespace normalisation
        ("my refund has not arrived", "billing"),  # ... and a conflicting label
        ("email me at a.b@example.com or call 13812345678", "contact"),
        ("我的订单还没有发货，请帮我查一下", "物流"),
        ("退款什么时候到账", "refund"),
        ("something entirely different about cooking pasta", "animals"),
    ]
    return Dataset(texts=[t for t, _ in rows], labels=[lab for _, lab in rows], multi_label=False,
                   source="support.jsonl",
                   warnings=["dropped 1 row(s) with an empty 'label' label (rows 12); fill them in"])


def test_profile_sections() -> None:
    p = profile_dataset(_support_ds())
    json.dumps(p)  # JSON-serialisable as is
    assert p["rows"] == 10 and p["num_labels"] == 5 and not p["multi_label"]
    assert p["labels"] == {"animals": 4, "refund": 3, "billing": 1, "contact": 1, "物流": 1}
    assert p["imbalance_ratio"] == 4.0
    assert p["length"]["max"] == 16  # the Chinese sentence: one token per character (15) + comma
    assert p["length"]["min"] == 5 and p["recommended_max_length"] == 16
    assert sum(p["length"]["histogram"]["counts"]) == 10
    assert p["exact_duplicates"]["count"] == 2 and p["exact_duplicates"]["examples"][0]["rows"] == [3, 4, 5]
    assert p["conflicting_labels"]["count"] == 1
    assert p["conflicting_labels"]["examples"][0]["labels"] == ["billing", "refund"]
    near = {tuple(e["rows"]) for e in p["near_duplicates"]["examples"]}
    # pairs between distinct texts: rows 0/1 differ in punctuation only, 0/2 by a word; row 1 is
    # represented by row 0, so 1/2 is not counted again
    assert near == {(0, 1), (0, 2)} and p["near_duplicates"]["count"] == 2
    assert p["near_duplicates"]["rows"] == 3
    assert p["pii"] == {"email": 1, "phone": 1} and p["pii_rows"] == 1
    assert p["empty_texts"] == 0 and "leakage" not in p
    warnings = " | ".join(p["warnings"])
    assert p["warnings"][0].startswith("dropped 1 row(s)")  # load notes come first
    for expected in ("2 row(s) repeat an earlier text", "near-duplicate pair(s)",
                     "1 text(s) appear with different labels", "personal data found in 1 row(s)",
                     "fewer than 5 rows"):
        assert expected in warnings


def test_leakage_exact_normalized_and_near() -> None:
    train = _support_ds()
    eval_ds = Dataset(texts=["my refund has not arrived",
                             "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG NEAR THE RIVER BANK TODAY...",
                             "the quick brown fox jumps over the lazy dogs near the river bank today",
                             "a brand new question", "另一个新问题"],
                      labels=["refund", "animals", "animals", "new", "refund"], multi_label=False)
    leak = profile_dataset(train, eval_ds=eval_ds)["leakage"]
    assert (leak["exact"], leak["normalized"], leak["near"], leak["rows"]) == (1, 1, 1, 3)
    assert leak["rate"] == 0.6
    assert [(e["kind"], e["eval_row"]) for e in leak["examples"]] == [("exact", 0), ("normalized", 1), ("near", 2)]
    p = profile_dataset(train, eval_ds=eval_ds)
    assert p["eval"]["unseen_labels"] == ["new"]
    assert any("3 of 5 eval row(s) also occur in train" in w for w in p["warnings"])


def test_multi_label_and_unlabelled() -> None:
    ds = Dataset(texts=["a b", "c d", "e f", "g h"], labels=[["x", "y"], ["x"], ["x"], []], multi_label=True)
    p = profile_dataset(ds)
    assert p["labels"] == {"x": 3, "y": 1} and p["imbalance_ratio"] == 3.0
    assert p["labels_per_row"] == {"mean": 1.0, "max": 2, "rows_without_labels": 1}
    bare = profile_dataset(Dataset(texts=["a", "b"], labels=[], multi_label=False))
    assert bare["labels"] == {} and bare["imbalance_ratio"] is None and bare["label_col"] is None


def test_near_duplicates_scale_without_all_pairs() -> None:
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(3000)]
    texts = [" ".join(rng.choices(vocab, k=20)) for _ in range(6000)]
    texts += [texts[i] + " extra" for i in range(0, 50)]  # 50 planted near duplicates
    ds = Dataset(texts=texts, labels=["a", "b"] * (len(texts) // 2), multi_label=False)
    start = time.perf_counter()
    p = profile_dataset(ds)
    assert time.perf_counter() - start < 20
    assert p["near_duplicates"]["count"] >= 47  # LSH finds ≥0.8-similar pairs with p ≈ 0.95+
    assert p["near_duplicates"]["count"] <= 55


def test_signatures_do_not_depend_on_batching() -> None:
    keys = ["ab", "abc", "x" * 20_000, "中文文本去重", "hello world"] * 3
    together = signatures(keys)
    assert together.shape == (15, 128)
    assert (together == np.stack([signatures([k])[0] for k in keys])).all()
    assert (together[2] != together[3]).any()


def test_one_megabyte_text(tmp_path: Path) -> None:
    big = ("数据分析 data analysis, call 13812345678. " * 30_000)[:1_000_000]
    ds = Dataset(texts=[big, "short text"], labels=["a", "b"], multi_label=False)
    start = time.perf_counter()
    p = profile_dataset(ds)
    assert time.perf_counter() - start < 20
    assert p["length"]["max"] > 100_000 and p["length"]["over_max_model_length"] == 1
    assert p["pii"]["phone"] > 20_000 and p["recommended_max_length"] == 512


def test_real_bbc_news_dataset() -> None:
    train_path = DATASETS / "bbc_news" / "train.jsonl"
    if not train_path.exists():
        pytest.skip(f"shared datasets not found at {DATASETS} (expected ../shared/datasets beside the repo)")
    ds = load_dataset(train_path)
    eval_ds = load_dataset(DATASETS / "bbc_news" / "test.jsonl")
    p = profile_dataset(ds, eval_ds=eval_ds)
    assert p["rows"] == 1704 and p["num_labels"] == 5
    assert set(p["labels"]) == {"business", "entertainment", "politics", "sports", "tech"}
    assert 1 < p["imbalance_ratio"] < 2
    assert p["length"]["p50"] > 200 and p["recommended_max_length"] == 512
    assert p["leakage"]["rows"] > 0  # BBC articles re-run with new headlines across the splits
    json.dumps(p)
