"""An ensemble version (a transformer and tfidf, mixed per language) served as one model: the server answers what
`modelshop eval` scores (the registered predictor run directly), in threads and in worker processes, in the TEI
and Hugging Face shapes, metered in the transformer part's tokens; pairs of texts and /explain are refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelshop.inference import load_predictor
from modelshop.platform import build_app
from modelshop.registry import Registry
from modelshop.train import TrainConfig, run_training
from tests.support import AUTH, FAST, make_settings, write_jsonl

TEXTS = ["Where is my parcel? It has been a week", "Please refund my order", "我的快递还没到", "我要退款，谢谢",
         "12345"]
ROWS = ([{"text": f"Where is my parcel number {i}, the courier lost it", "label": "delivery"} for i in range(30)]
        + [{"text": f"Please refund order {i}, I want my money back", "label": "refund"} for i in range(30)]
        + [{"text": f"我的快递{i}号还没到，物流没有更新", "label": "delivery"} for i in range(30)]
        + [{"text": f"订单{i}号请给我退款，把钱退给我", "label": "refund"} for i in range(30)])


@pytest.fixture(scope="module")
def ensemble_home(tmp_path_factory, tiny_bert):
    """A registry whose one model, "both:1", is an ensemble of the tiny BERT and tfidf."""
    folder = tmp_path_factory.mktemp("ensemble")
    data = write_jsonl(folder / "train.jsonl", ROWS)
    settings = make_settings(folder / "home")
    result = run_training(data, name="both", settings=settings,
                          cfg=TrainConfig(base_model=str(tiny_bert), deploy="ensemble", max_length=32,
                                          validation_fraction=0.2, **FAST))
    assert result["family"] == "ensemble"
    registry = Registry.from_settings(settings)
    row = registry.get("both:1")
    expected = load_predictor(registry.path(row), registered=row).predict_proba(TEXTS)
    return folder / "home", expected


@pytest.mark.parametrize("processes", [False, True])
def test_the_server_answers_what_eval_scores(ensemble_home, processes):
    home, expected = ensemble_home
    settings = make_settings(home, serve_processes=processes, serve_workers=1)
    with TestClient(build_app(settings)) as c:
        served = c.app.state.modelshop.service.pool.served["both"]
        assert (served.family, served.format) == ("ensemble", "ensemble")
        assert (served.processes is not None) == processes
        r = c.post("/predict", json={"inputs": [[t] for t in TEXTS]}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.headers["x-model"] == "both:1"
        for row, probs in zip(r.json(), expected, strict=True):
            got = {p["label"]: p["score"] for p in row}
            assert [got["delivery"], got["refund"]] == pytest.approx(probs.tolist(), abs=1e-5)
        # metered in the tokens of the transformer part, as a transformer alone would be
        tokens = sum(len(ids) for ids in served.predictor.tokenizer(TEXTS)["input_ids"])
        assert int(r.headers["x-compute-tokens"]) == tokens
        hf = c.post("/models/both", json={"inputs": TEXTS[2]}, headers=AUTH)
        assert hf.status_code == 200, hf.text
        assert {p["label"]: p["score"] for p in hf.json()[0]}["refund"] == pytest.approx(expected[2][1], abs=1e-5)


def test_a_pair_of_texts_and_an_explanation_are_refused_in_one_line(ensemble_home):
    home, _ = ensemble_home
    with TestClient(build_app(make_settings(home, serve_processes=False, serve_workers=1))) as c:
        pair = c.post("/predict", json={"inputs": ["is it here?", "no"]}, headers=AUTH)
        explained = c.post("/explain?model=both", json={"inputs": TEXTS[0]}, headers=AUTH)
    assert pair.status_code == 422, pair.text
    assert "is a pair of texts, but both:1 is an ensemble" in pair.json()["error"]
    assert explained.status_code == 422, explained.text
    assert "/explain does not explain a combination" in explained.json()["error"]
