"""A model serves up to its own position limit, not the (shorter) length it was trained at: the limit
read from the config and tokenizer, and long inputs answered alike packed, padded and in ONNX Runtime."""

from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from transformers import BertConfig, RobertaConfig

from modelshop.inference import load_predictor
from modelshop.inference.base import input_limit
from modelshop.inference.transformer import PACK_WIDTH, attention_groups


def ids_of(predictor, n_tokens: int, seed: int) -> list[int]:
    """[CLS] word pieces [SEP], exactly `n_tokens` long."""
    rng = random.Random(seed)
    tok = predictor.tokenizer
    return [tok.cls_token_id, *(rng.randrange(2000, 8000) for _ in range(n_tokens - 2)), tok.sep_token_id]


def test_the_limit_is_the_smaller_of_positions_and_tokenizer():
    unset = SimpleNamespace(model_max_length=int(1e30))   # what a tokenizer without a limit says
    assert input_limit(BertConfig(max_position_embeddings=128), SimpleNamespace(model_max_length=512)) == 128
    assert input_limit(BertConfig(), unset) == 512
    assert input_limit(BertConfig(), SimpleNamespace(model_max_length=256)) == 256
    # RoBERTa numbers positions from pad_token_id + 1: 514 embeddings take 512 tokens
    assert input_limit(RobertaConfig(max_position_embeddings=514, pad_token_id=1), unset) == 512
    assert input_limit(None, SimpleNamespace(model_max_length=300)) == 300


def test_a_predictor_knows_its_trained_length_and_its_limit(tiny_classifier):
    p = load_predictor(tiny_classifier)
    assert (p.trained_length, p.max_length, p.input_limit) == (16, 16, 128)


def test_long_inputs_packed_answer_as_padded(tiny_classifier):
    p = load_predictor(tiny_classifier)
    assert p.packable
    import torch

    def padded_one(ids):  # one input alone: no padding at all
        t = torch.tensor([ids])
        return p.forward({"input_ids": t, "attention_mask": torch.ones_like(t), "token_type_ids": torch.zeros_like(t)})

    lengths = [5, 92, 12, 128, 42, 7, 72, 3]   # up to the model's 128, far past its trained 16
    mixed = [ids_of(p, n, seed) for seed, n in enumerate(lengths)]
    groups = attention_groups(lengths)
    # the short inputs stay in rows PACK_WIDTH wide; the long ones get rows of their own width
    assert len(groups) == 2 and groups[0].width <= PACK_WIDTH and groups[1].width == 128
    expected = np.concatenate([padded_one(ids) for ids in mixed])
    np.testing.assert_allclose(p.forward_packed([(ids, None) for ids in mixed]), expected, atol=1e-5)
    only_long = [x for x in mixed if len(x) > PACK_WIDTH]
    np.testing.assert_allclose(p.forward_packed([(ids, None) for ids in only_long]),
                               expected[[i for i, n in enumerate(lengths) if n > PACK_WIDTH]], atol=1e-5)


def test_long_inputs_in_onnx_runtime(tiny_classifier, tmp_path):
    pytest.importorskip("onnxruntime")
    import json

    from modelshop.optimize.compress import export_onnx

    export_onnx(tiny_classifier, tmp_path)
    meta = json.loads((tiny_classifier / "modelshop.json").read_text())
    (tmp_path / "modelshop.json").write_text(json.dumps({**meta, "format": "onnx"}))
    onnx, torch_p = load_predictor(tmp_path), load_predictor(tiny_classifier)
    assert (onnx.trained_length, onnx.input_limit) == (16, 128)
    ids = ids_of(torch_p, 100, 7)
    batch = {"input_ids": np.array([ids]), "attention_mask": np.ones((1, len(ids)), dtype=np.int64),
             "token_type_ids": np.zeros((1, len(ids)), dtype=np.int64)}
    np.testing.assert_allclose(onnx.forward(batch), torch_p.forward_packed([(ids, None)]), atol=1e-4)
