"""/explain: integrated gradients add up, occlusion covers every token, tfidf coefficients add up exactly."""

from __future__ import annotations

import math

import pytest

from tests.support import AUTH


def explain(client, model, text, **extra):
    r = client.post(f"/explain?model={model}", json={"inputs": text, **extra}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_integrated_gradients_are_complete(client):
    out = explain(client, "toy", "great product, works well")
    assert out["method"] == "integrated_gradients" and out["model"] == "toy:1" and out["steps"] == 16
    tokens = [a["token"] for a in out["attributions"]]
    assert tokens == ["great", "product", ",", "works", "well"]  # no [CLS]/[SEP]
    total = sum(a["score"] for a in out["attributions"])
    # completeness: attributions add up to logit(text) − logit(baseline), up to the reported delta
    assert total - (out["target_logit"] - out["baseline_logit"]) == pytest.approx(out["convergence_delta"], abs=1e-4)
    assert abs(out["convergence_delta"]) < 0.05 * abs(out["target_logit"] - out["baseline_logit"]) + 1e-3
    predicted = client.post("/predict?model=toy", json={"inputs": "great product, works well"}, headers=AUTH).json()
    assert out["label"] == predicted[0]["label"] and out["score"] == pytest.approx(predicted[0]["score"], abs=1e-5)
    other = next(lab for lab in ("good", "bad") if lab != out["label"])
    assert explain(client, "toy", "great product, works well", target=other)["label"] == other


def test_occlusion_scores_every_token(client):
    out = explain(client, "toy", "awful service, never again", method="occlusion")
    assert out["method"] == "occlusion"
    assert [a["token"] for a in out["attributions"]] == ["awful", "service", ",", "never", "again"]
    assert all(math.isfinite(a["score"]) and -1 <= a["score"] <= 1 for a in out["attributions"])
    assert any(a["score"] != 0 for a in out["attributions"])


def test_tfidf_coefficients_add_up_to_the_log_odds(client):
    text = "Refund me now: terrible, broken on arrival"
    out = explain(client, "fast", text)
    assert out["method"] == "coefficients" and out["units"] == "words"
    assert [a["token"] for a in out["attributions"]] == text.split()
    assert all(text[a["start"]:a["end"]] == a["token"] for a in out["attributions"])
    total = sum(a["score"] for a in out["attributions"]) + out["bias"] + out["unattributed"]
    assert total == pytest.approx(out["target_logit"], abs=1e-9)
    assert abs(out["unattributed"]) < 1e-9  # every n-gram was placed on its words
    p = out["score"]
    assert out["target_logit"] == pytest.approx(math.log(p / (1 - p)), abs=1e-6)  # binary: log-odds of the label
    assert out["label"] == "bad"
    strongest = max(out["attributions"], key=lambda a: a["score"])
    assert strongest["token"].strip(",:").lower() in {"terrible", "broken", "refund", "arrival"}
    assert out["features"] and all({"feature", "kind", "score"} <= set(f) for f in out["features"])
    good = explain(client, "fast", text, target="good")
    assert good["target_logit"] == pytest.approx(-out["target_logit"], abs=1e-9)
