"""A model answers inputs past the length it was trained at, up to its own position limit (toy: trained
at 32 tokens, the tiny BERT has 128 positions): on the packed path, the padded path and in worker
processes, each as the model computes the whole input alone."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.inference import load_predictor, probabilities
from modelshop.platform import build_app
from modelshop.registry import Registry
from modelshop.serve.runners import TransformerRunner
from tests.support import AUTH, make_settings

MID = " ".join(["wonderful"] * 60)                       # 62 tokens: past the trained 32
NEAR = "awful " + " ".join(["broken"] * 120)              # 123 tokens: near the 128 limit
TEXTS = [MID, "great product", NEAR]


@pytest.fixture(scope="module")
def toy(served_settings):
    registry = Registry.from_settings(served_settings)
    return load_predictor(registry.path(registry.get("toy")))


def alone(toy, text: str) -> np.ndarray:
    """The model on the whole input, by itself (no batch, no padding, no truncation)."""
    import torch

    ids = torch.tensor([toy.tokenizer(text)["input_ids"]])
    return toy.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "token_type_ids": torch.zeros_like(ids)})[0]


def scores(reply: list[list[dict]]) -> list[list[float]]:
    return [[p["score"] for p in sorted(row, key=lambda p: p["label"])] for row in reply]


def test_an_input_past_the_trained_length_is_answered_not_refused(client, toy):
    r = client.post("/models/toy", json={"inputs": TEXTS}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.headers["x-truncated-inputs"] == "0"
    assert int(r.headers["x-compute-tokens"]) == 62 + 4 + 123
    expected = probabilities(np.stack([alone(toy, t) for t in TEXTS]), False)
    np.testing.assert_allclose(scores(r.json()), expected, atol=1e-5)
    explained = client.post("/explain?model=toy", json={"inputs": MID}, headers=AUTH)
    assert explained.status_code == 200, explained.text


def test_the_padded_path_takes_long_inputs_too(toy):
    runner = TransformerRunner(toy, label="toy:1", as_torch=True)
    assert runner.max_length == 128 and toy.max_length == 32
    encoded = runner.prepare([(t, None) for t in TEXTS], truncate=False)
    packed = np.stack(runner.run(encoded))
    toy.packable = False  # what a non-BERT family (or ONNX) takes: padded, split by length
    try:
        padded = np.stack(runner.run(encoded))
    finally:
        toy.packable = True
    expected = np.stack([alone(toy, t) for t in TEXTS])
    np.testing.assert_allclose(packed, expected, atol=1e-5)
    np.testing.assert_allclose(padded, expected, atol=1e-5)


def test_worker_processes_take_long_inputs(served_settings, client):
    threads = client.post("/models/toy", json={"inputs": TEXTS}, headers=AUTH).json()
    settings = make_settings(served_settings.home, serve_processes=True, serve_workers=1)
    with TestClient(build_app(settings)) as c:
        assert c.app.state.modelshop.service.pool.served["toy"].processes is not None
        r = c.post("/models/toy", json={"inputs": TEXTS}, headers=AUTH)
        assert r.status_code == 200, r.text
    np.testing.assert_allclose(scores(r.json()), scores(threads), atol=1e-6)
