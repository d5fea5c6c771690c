"""int8, ONNX and ONNX-int8 versions: registered with lineage and figures, loadable, served, refused well."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.errors import NotFound, ValidationError
from modelshop.inference import load_predictor
from modelshop.optimize import optimize
from modelshop.platform import build_app
from modelshop.registry import Registry
from tests.support import AUTH

# torch warns that its quantised tensor types are deprecated each time an int8 version loads
# (inference/transformer.py quantises at load); the int8 path itself is what is tested here.
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")

TEXTS = ["great product", "awful service, refund me", "it arrived on time", "a b c d e f g h i j k l m n o p"]


@pytest.fixture(scope="module")
def optimized(toy_registry):
    settings, evaluation = toy_registry
    return optimize("toy", data=evaluation, variants=["int8", "onnx", "onnx-int8"], settings=settings)


def test_each_form_is_a_new_staging_version_with_its_figures(optimized, toy_registry):
    settings, evaluation = toy_registry
    registry = Registry.from_settings(settings)
    source = registry.get("toy:1")
    assert optimized["source"]["ref"] == "toy:1" and optimized["source"]["n"] == 12
    assert [(v["version"], v["variant"], v["stage"]) for v in optimized["versions"]] == [
        (2, "int8", "staging"), (3, "onnx", "staging"), (4, "onnx-int8", "staging")]
    for v, fmt in zip(optimized["versions"], ("int8", "onnx", "onnx"), strict=True):
        row = registry.get(f"toy:{v['version']}")
        assert (row.format, row.parent_id, row.family, row.labels) == (fmt, source.id, "transformer", source.labels)
        assert row.metrics["texts_per_s"] > 0 and 0 <= row.metrics["macro_f1"] <= 1
        assert row.metrics["source_figures"]["texts_per_s"] == optimized["source"]["texts_per_s"]
        assert row.metrics["speedup"] == pytest.approx(row.metrics["texts_per_s"] / optimized["source"]["texts_per_s"],
                                                       abs=0.01)
        folder = registry.path(row)
        report = json.loads((folder / "optimize.json").read_text())
        assert report["variant"] == v["variant"] and report["eval"] == str(evaluation)
        assert "| source toy:1 |" in (folder / "card.md").read_text()
        assert not (folder / "history.json").exists()  # the source's reports are not copied as its own
    assert registry.get("toy").version == 1  # production is untouched


def test_each_form_loads_back_and_agrees_with_the_source(optimized, toy_registry):
    settings, _ = toy_registry
    registry = Registry.from_settings(settings)
    source = load_predictor(registry.path(registry.get("toy:1"))).logits(TEXTS)
    for version, tolerance in ((2, 0.05), (3, 1e-4), (4, 0.05)):
        predictor = load_predictor(registry.path(registry.get(f"toy:{version}")))
        assert predictor.logits(TEXTS) == pytest.approx(source, abs=tolerance), version
    onnx = load_predictor(registry.path(registry.get("toy:3")))
    assert type(onnx).__name__ == "OnnxPredictor" and onnx.max_length == 32


def test_an_onnx_version_is_served_through_onnxruntime(optimized, toy_registry):
    settings, _ = toy_registry
    registry = Registry.from_settings(settings)
    registry.promote("toy:3")
    try:
        with TestClient(build_app(settings)) as c:
            r = c.post("/predict?model=toy", json={"inputs": [[t] for t in TEXTS]}, headers=AUTH)
            assert r.status_code == 200 and r.headers["x-model"] == "toy:3"
            source = load_predictor(registry.path(registry.get("toy:1"))).predict_proba(TEXTS)
            for row, probs in zip(r.json(), source, strict=True):
                assert {p["label"]: p["score"] for p in row}["good"] == pytest.approx(float(probs[1]), abs=1e-4)
            assert c.get("/info?model=toy", headers=AUTH).json()["format"] == "onnx"
            pair = c.post("/predict?model=toy", json={"inputs": ["is it good?", "yes"]}, headers=AUTH)
            assert pair.status_code == 200
            ex = c.post("/explain?model=toy", json={"inputs": "awful service"}, headers=AUTH).json()
            assert ex["method"] == "occlusion" and [a["token"] for a in ex["attributions"]] == ["awful", "service"]
            r = c.post("/explain?model=toy", json={"inputs": "awful", "method": "integrated_gradients"}, headers=AUTH)
            assert r.status_code == 422 and "use occlusion" in r.json()["error"]
    finally:
        registry.promote("toy:1")


def test_refusals_say_what_to_do(optimized, toy_registry, tmp_path):
    settings, evaluation = toy_registry
    with pytest.raises(ValidationError, match="only fp32 PyTorch transformer versions"):
        optimize("fast", data=evaluation, variants=["int8"], settings=settings)
    with pytest.raises(ValidationError, match="toy:2 is transformer/int8"):
        optimize("toy:2", data=evaluation, variants=["onnx"], settings=settings)
    with pytest.raises(ValidationError, match='unknown compression "fp16"'):
        optimize("toy", data=evaluation, variants=["fp16"], settings=settings)
    with pytest.raises(ValidationError, match="--data is required"):
        optimize("toy", data=None, variants=["int8"], settings=settings)
    with pytest.raises(NotFound, match='no model named "toyy"'):
        optimize("toyy", data=evaluation, variants=["int8"], settings=settings)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"text": "meh", "label": "neutral"}) + "\n" + json.dumps(
        {"text": "ok", "label": "good"}) + "\n")
    with pytest.raises(ValidationError, match="not known to toy:1: neutral"):
        optimize("toy", data=other, variants=["int8"], settings=settings)


def test_cli_prints_json(optimized, toy_registry, monkeypatch, capsys):
    from modelshop.cli import main
    from modelshop.settings import get_settings

    settings, evaluation = toy_registry
    monkeypatch.setenv("MODELSHOP_HOME", str(settings.home))
    monkeypatch.setenv("MODELSHOP_PROGRESS", "false")
    get_settings.cache_clear()
    try:
        main(["optimize", "--model", "toy:1", "--int8", "--data", str(evaluation), "--json"])
    finally:
        get_settings.cache_clear()
    out = json.loads(capsys.readouterr().out)
    assert out["versions"][0]["variant"] == "int8" and out["versions"][0]["version"] == 5
    assert np.isfinite(out["versions"][0]["texts_per_s"])
