"""Classification routes through the in-process ASGI client: TEI and Hugging Face shapes, model choice,
truncation, usage headers; answers checked against the predictor run directly."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.inference import load_predictor
from modelshop.platform import build_app
from modelshop.registry import Registry
from tests.support import AUTH, make_settings

LONG = " ".join(["wonderful"] * 150)  # 152 tokens: past the tiny BERT's 128 positions (toy was trained at 32)


def direct_probs(settings, name, texts):
    registry = Registry.from_settings(settings)
    return load_predictor(registry.path(registry.get(name))).predict_proba(texts)


def test_tei_single_text_is_a_flat_list_sorted_by_score(client, served_settings):
    r = client.post("/predict?model=toy", json={"inputs": "great product"}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [set(p) for p in out] == [{"label", "score"}] * 2
    assert out[0]["score"] >= out[1]["score"]
    assert sum(p["score"] for p in out) == pytest.approx(1.0, abs=1e-6)
    expected = direct_probs(served_settings, "toy", ["great product"])[0]
    got = {p["label"]: p["score"] for p in out}
    assert [got["bad"], got["good"]] == pytest.approx(expected.tolist(), abs=1e-5)


def test_tei_batch_pairs_and_raw_scores(client, served_settings):
    texts = ["great product", "awful service, never again", "very happy"]
    r = client.post("/predict?model=toy", json={"inputs": [[t] for t in texts]}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 3 and all(isinstance(x, list) for x in out)
    expected = direct_probs(served_settings, "toy", texts)
    for row, probs in zip(out, expected, strict=True):
        assert {p["label"]: p["score"] for p in row}["good"] == pytest.approx(float(probs[1]), abs=1e-5)
    # ["a", "b"] is ONE pair in TEI, not a batch of two
    pair = client.post("/predict?model=toy", json={"inputs": ["is it good?", "yes, great"]}, headers=AUTH).json()
    assert isinstance(pair[0], dict) and len(pair) == 2
    mixed = client.post("/predict?model=toy", json={"inputs": [["one"], ["is it good?", "yes, great"]]},
                        headers=AUTH).json()
    # a pair inside a batch is the same pair (up to float noise from padding)
    assert [p["label"] for p in mixed[1]] == [p["label"] for p in pair]
    assert [p["score"] for p in mixed[1]] == pytest.approx([p["score"] for p in pair], abs=1e-6)
    raw = client.post("/predict?model=toy", json={"inputs": "great product", "raw_scores": True}, headers=AUTH).json()
    logits = np.array([p["score"] for p in sorted(raw, key=lambda p: p["label"])])
    probs = np.exp(logits) / np.exp(logits).sum()
    assert probs == pytest.approx(expected[0].tolist(), abs=1e-5)


def test_usage_headers_on_metered_answers(client):
    r = client.post("/predict?model=toy", json={"inputs": [["great product"], ["bad"]]}, headers=AUTH)
    h = r.headers
    assert len(h["x-request-id"]) == 32
    assert int(h["x-compute-tokens"]) == 4 + 3  # [CLS] great product [SEP] + [CLS] bad [SEP]
    assert int(h["x-compute-characters"]) == len("great product") + len("bad")
    assert float(h["x-queue-time"]) >= 0 and float(h["x-inference-time"]) > 0
    assert h["x-model"] == "toy:1"


def test_hugging_face_shape_top_k_and_function(client):
    r = client.post("/models/toy", json={"inputs": "great product", "parameters": {"top_k": 1}}, headers=AUTH)
    assert r.status_code == 200, r.text
    out = r.json()
    assert len(out) == 1 and len(out[0]) == 1
    both = client.post("/models/toy", json={"inputs": ["great", "bad"]}, headers=AUTH).json()
    assert len(both) == 2 and all(len(x) == 2 for x in both)
    assert both[0][0]["score"] >= both[0][1]["score"]
    sig = client.post("/models/toy", json={"inputs": "great", "parameters": {"function_to_apply": "sigmoid"}},
                      headers=AUTH).json()[0]
    assert sum(p["score"] for p in sig) != pytest.approx(1.0, abs=1e-4)  # independent sigmoids
    assert all(0 < p["score"] < 1 for p in sig)


def test_tfidf_model_served_and_refuses_pairs(client, served_settings):
    r = client.post("/models/fast", json={"inputs": "terrible, broken, awful"}, headers=AUTH)
    assert r.status_code == 200 and r.json()[0][0]["label"] == "bad"
    r = client.post("/predict?model=fast", json={"inputs": ["a", "b"]}, headers=AUTH)
    assert r.status_code == 422 and "pair" in r.json()["error"]


def test_default_model_needs_a_choice_when_several(client, served_settings):
    r = client.post("/predict", json={"inputs": "great"}, headers=AUTH)
    assert r.status_code == 422
    body = r.json()
    assert body["error_type"] == "validation" and "fast, toy" in body["error"] and "?model=" in body["error"]
    app = build_app(make_settings(served_settings.home, default_model="fast"))
    with TestClient(app) as c:
        r = c.post("/predict", json={"inputs": "great"}, headers=AUTH)
        assert r.status_code == 200 and r.headers["x-model"] == "fast:1"


def test_exactly_one_model_is_the_default(fresh_settings):
    with TestClient(build_app(fresh_settings)) as c:
        r = c.post("/predict", json={"inputs": "great"}, headers=AUTH)
        assert r.status_code == 200 and r.headers["x-model"] == "fast:1"


def test_unknown_model_is_404_with_a_suggestion(client):
    r = client.post("/models/tyo", json={"inputs": "x"}, headers=AUTH)
    assert r.status_code == 404
    assert r.json() == {"error": 'no model named "tyo" is served (did you mean "toy"?); served: fast, toy',
                        "error_type": "not_found"}


def test_too_long_is_413_with_the_limit_unless_truncated(client, served_settings):
    r = client.post("/predict?model=toy", json={"inputs": LONG}, headers=AUTH)
    assert r.status_code == 413
    assert "at most 128" in r.json()["error"] and '"truncate": true' in r.json()["error"]
    r = client.post("/predict?model=toy", json={"inputs": LONG, "truncate": True}, headers=AUTH)
    assert r.status_code == 200 and r.headers["x-compute-tokens"] == "128" and r.headers["x-truncated-inputs"] == "1"
    left = client.post("/predict?model=toy", json={"inputs": "awful " + LONG, "truncate": True,
                                                   "truncation_direction": "left"}, headers=AUTH).json()
    right = client.post("/predict?model=toy", json={"inputs": "awful " + LONG, "truncate": True}, headers=AUTH).json()
    assert left != right  # a different end was cut
    app = build_app(make_settings(served_settings.home, auto_truncate=True))
    with TestClient(app) as c:
        assert c.post("/predict?model=toy", json={"inputs": LONG}, headers=AUTH).status_code == 200
        r = c.post("/models/toy", json={"inputs": LONG, "parameters": {"truncation": False}}, headers=AUTH)
        assert r.status_code == 413


def test_info_health_and_metrics(client):
    info = client.get("/info?model=toy", headers=AUTH).json()
    assert info["model_id"] == "toy" and info["model_version"] == 1 and info["family"] == "transformer"
    assert info["labels"] == ["bad", "good"] and info["max_input_length"] == 128
    assert info["trained_length"] == 32
    assert info["max_client_batch_size"] == 256
    assert info["model_type"]["classifier"]["label2id"] == {"bad": 0, "good": 1}
    assert client.get("/info?model=toy").status_code == 401
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["models"] == {"fast": "fast:1", "toy": "toy:1"}
    client.post("/predict?model=toy", json={"inputs": "ok"}, headers=AUTH)
    text = client.get("/metrics", headers=AUTH).text
    for name in ("modelshop_requests_total", "modelshop_request_failures_total", "modelshop_queue_seconds_bucket",
                 "modelshop_tokenization_seconds_bucket", "modelshop_inference_seconds_bucket",
                 "modelshop_batch_size_bucket", "modelshop_queue_size"):
        assert name in text, name
    assert 'modelshop_requests_total{route="/predict",status="200"}' in text
