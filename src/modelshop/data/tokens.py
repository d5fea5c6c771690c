"""Token counts of texts and the `max_length` they call for.

With a tokenizer (any Hugging Face tokenizer, or a `tokenizers.Tokenizer`) the count includes
its special tokens, i.e. what the model sees. Without one, a fallback that needs no download:
each CJK character is one token and every other run of non-space characters is one token.
"""

from __future__ import annotations

import math
import re
from typing import Any

from modelshop.errors import ValidationError

_CJK = ("\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
        "\U00020000-\U0002ebef")
_FALLBACK = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_BATCH = 256


def simple_token_count(text: str) -> int:
    """Whitespace words, with each CJK (Chinese, Japanese, Korean) character counted as a token."""
    return sum(1 for _ in _FALLBACK.finditer(text))


def token_lengths(texts: list[str], tokenizer: Any = None) -> list[int]:
    """The number of tokens of each text: `tokenizer`'s, or the fallback's when it is None."""
    if tokenizer is None:
        return [simple_token_count(t) for t in texts]
    if hasattr(tokenizer, "encode_batch"):  # a bare `tokenizers.Tokenizer`
        return [len(enc.ids) for i in range(0, len(texts), _BATCH)
                for enc in tokenizer.encode_batch(texts[i:i + _BATCH])]
    if not callable(tokenizer):
        raise ValidationError(f"tokenizer must be a Hugging Face tokenizer, got {type(tokenizer).__name__}; "
                              "load one with transformers.AutoTokenizer.from_pretrained")
    lengths: list[int] = []
    for i in range(0, len(texts), _BATCH):
        # verbose=False: long texts are expected here, we are measuring them, not feeding a model.
        encoded = tokenizer(texts[i:i + _BATCH], add_special_tokens=True, truncation=False,
                            verbose=False)
        lengths.extend(len(ids) for ids in encoded["input_ids"])
    return lengths


def recommend_max_length(lengths: list[int], model_max: int = 512) -> int:
    """The 95th percentile of `lengths` rounded up to a multiple of 16, within [16, model_max].

    The 95th rather than the 99th percentile: padding is paid by every batch, truncation only by
    the longest 5% of texts, whose first tokens usually carry the label.
    """
    if not lengths:
        raise ValidationError("no token lengths to recommend a max_length from; give at least one text")
    if model_max < 1:
        raise ValidationError(f"model_max must be a positive number of tokens, got {model_max}")
    p95 = percentile(sorted(lengths), 95)
    rounded = max(16, math.ceil(p95 / 16) * 16)
    return min(rounded, model_max)


def percentile(ordered: list[int], q: float) -> int:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]
