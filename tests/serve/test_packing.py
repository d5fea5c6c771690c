"""Packed inference (several inputs per row, block-diagonal attention) answers what padded batches do."""

from __future__ import annotations

import random

import numpy as np
import pytest

from modelshop.inference import load_predictor
from modelshop.inference.transformer import pack_rows, quantize_int8
from modelshop.registry import Registry
from modelshop.serve.runners import TransformerRunner

WORDS = ["great", "awful", "product", "service", "delivery", "refund", "never", "again", "very", "happy", "broken",
         "late", "fast"]


def texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 25))) for _ in range(n)]


@pytest.fixture(scope="module")
def toy(served_settings):
    registry = Registry.from_settings(served_settings)
    return load_predictor(registry.path(registry.get("toy")))


def test_pack_rows_places_every_input_once_within_the_width():
    rng = random.Random(1)
    for _ in range(200):
        lengths = [rng.randint(1, 80) for _ in range(rng.randint(1, 60))]
        rows = pack_rows(lengths, 64)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        for row in rows:
            assert sum(lengths[i] for i in row) <= 64 or len(row) == 1
        # first-fit decreasing never needs more than 11/9 OPT + 1 rows; OPT ≥ total/width
        assert len(rows) <= 11 / 9 * max(sum(lengths) / 64, sum(x > 32 for x in lengths)) + 1


def test_packed_logits_equal_padded_logits(toy):
    assert toy.packable
    runner = TransformerRunner(toy, label="toy", as_torch=True)
    seqs = [(t, None) for t in texts(40)] + [("is it any good?", "yes, works well"), ("late", None)]
    encoded = runner.prepare(seqs, truncate=True)
    packed = toy.forward_packed([(e.ids, e.type_ids) for e in encoded])
    padded = np.concatenate([toy.forward(runner.pad([e])) for e in encoded])  # one by one: no padding at all
    assert packed.shape == padded.shape
    np.testing.assert_allclose(packed, padded, atol=1e-5)
    # and the runner (what the server calls) takes the packed path with the same answers, in order
    np.testing.assert_allclose(np.stack(runner.run(encoded)), padded, atol=1e-5)
    # batch scoring (`logits`) packs too, in length-sorted chunks, answering in input order
    singles = [t for t, _ in seqs[:40]] + ["late"]
    np.testing.assert_allclose(toy.logits(singles, batch_size=16), np.delete(padded, 40, axis=0), atol=1e-5)


def test_packed_int8_agrees_with_padded_int8(toy):
    import copy

    int8 = copy.copy(toy)
    int8.model = quantize_int8(copy.deepcopy(toy.model))
    runner = TransformerRunner(int8, label="toy-int8", as_torch=True)
    encoded = runner.prepare([(t, None) for t in texts(30, seed=3)], truncate=True)
    packed = int8.forward_packed([(e.ids, e.type_ids) for e in encoded])
    padded = int8.forward(runner.pad(encoded))
    # dynamic int8 scales each batch's activations by its own range, so the two differ a little
    np.testing.assert_allclose(packed, padded, atol=0.05)
    assert (packed.argmax(1) == padded.argmax(1)).mean() >= 0.9
