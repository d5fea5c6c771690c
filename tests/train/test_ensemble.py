"""What a run deploys, chosen on validation figures: the transformer, tfidf, or both combined per language; the
combination registered as one version that `eval` scores as it was reported; one dataset where it is not worth it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from modelshop.errors import ValidationError
from modelshop.inference import load_predictor
from modelshop.inference.ensemble import EnsemblePredictor, mix, text_languages
from modelshop.registry import Registry
from modelshop.train import TrainConfig, evaluate, run_training
from modelshop.train.ensemble import MIN_VALIDATION_ROWS, choose, cross_fitted, label_targets
from tests.support import FAST, write_jsonl
from tests.train.mixed import mixed_rows

LABELS = ["delivery", "refund"]


def sure(labels: list[str], right: np.ndarray, confidence: float) -> np.ndarray:
    """Probabilities that put `confidence` on the gold label where `right`, else on the other label."""
    index = np.array([LABELS.index(y) for y in labels])
    chosen = np.where(right, index, 1 - index)
    probs = np.full((len(labels), 2), 1 - confidence)
    probs[np.arange(len(labels)), chosen] = confidence
    return probs


@pytest.fixture(scope="module")
def val():
    """60 validation messages, 30 English and 30 Chinese, and the language of each."""
    rows = mixed_rows()[::3][:60]
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    zh = np.array([any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts])
    return texts, labels, zh


def test_models_strong_on_different_languages_are_combined(val):
    texts, labels, zh = val
    # the transformer is right on English and wrong on most Chinese; tfidf the other way round
    rng = np.random.default_rng(0)
    p_tr = sure(labels, ~zh | (rng.random(len(zh)) < 0.3), 0.9)
    p_tf = sure(labels, zh | (rng.random(len(zh)) < 0.4), 0.7)
    choice = choose(texts, labels, LABELS, p_tr, p_tf, multi_label=False, languages=["en", "zh"])
    assert choice.deploy == "ensemble" and choice.languages == ["en", "zh"]
    per = choice.weights["per_language"]
    assert per["en"] >= 0.6 and per["zh"] <= 0.4  # each language leans on the model that reads it
    v = choice.validation
    assert v["rows"] == 60 and v["ensemble"] > max(v["transformer"], v["tfidf"]) + 0.01
    assert v["per_language"]["en"]["transformer"] == 1.0 and v["per_language"]["zh"]["tfidf"] == 1.0
    assert "never the evaluation file" in choice.reason and "worth serving both" in choice.reason
    # the figure it was chosen on is cross-fitted: the weights that scored a row never saw it
    truth = label_targets(labels, LABELS, False)
    codes = text_languages(texts, ["en", "zh"])
    oof = cross_fitted(truth, p_tr, p_tf, codes, multi_label=False, threshold=0.5)
    assert v["ensemble"] == pytest.approx(f1_score(truth, oof.argmax(1), average="macro"), abs=1e-4)


def test_a_combination_no_better_than_one_model_is_not_chosen(val):
    texts, labels, zh = val
    good = sure(labels, np.ones(len(labels), bool), 0.8)
    # both right everywhere: the combination adds nothing, and tfidf is the cheaper of two equals
    choice = choose(texts, labels, LABELS, good, good.copy(), multi_label=False, languages=["en", "zh"])
    assert choice.deploy == "tfidf" and "not worth serving both" in choice.reason
    assert choice.validation["ensemble"] == choice.validation["tfidf"] == 1.0
    # the transformer right everywhere, tfidf wrong on a third: the transformer alone, at weight 1
    rng = np.random.default_rng(1)
    worse = sure(labels, rng.random(len(labels)) > 0.33, 0.6)
    choice = choose(texts, labels, LABELS, good, worse, multi_label=False, languages=["en", "zh"])
    assert choice.deploy == "transformer" and "uses one model alone" in choice.reason
    assert set(choice.weights["per_language"].values()) | {choice.weights["default"]} == {1.0}


def test_too_few_validation_rows_keep_the_model_asked_for(val):
    texts, labels, _ = val
    n = MIN_VALIDATION_ROWS - 1
    good = sure(labels[:n], np.ones(n, bool), 0.8)
    choice = choose(texts[:n], labels[:n], LABELS, good, good, multi_label=False)
    assert choice.deploy == "transformer" and choice.weights is None
    assert f"Only {n} validation rows" in choice.reason


def test_mix_weights_each_text_by_its_language():
    p_tr, p_tf = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]]), np.array([[0.1, 0.9]] * 3)
    weights = {"default": 0.5, "per_language": {"en": 1.0, "zh": 0.0}}
    got = mix(p_tr, p_tf, text_languages(["Where is my parcel?", "我的快递还没到", "12345"], ["en", "zh"]), weights)
    assert got == pytest.approx(np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]]))  # digits: no language, the default


@pytest.fixture(scope="module")
def bilingual(tmp_path_factory):
    """200 English and Chinese delivery/refund messages: 160 to train on, 40 (20 per language) to evaluate on."""
    folder = tmp_path_factory.mktemp("bilingual")
    rows = mixed_rows()
    held = [(i // 5 + i) % 5 == 0 for i in range(len(rows))]  # every end once, each with another start
    train = write_jsonl(folder / "train.jsonl", [r for r, h in zip(rows, held) if not h])
    evaluation = write_jsonl(folder / "eval.jsonl", [r for r, h in zip(rows, held) if h])
    return train, evaluation


# 160 training rows: a fifth of them (32) validate, enough to choose on (MIN_VALIDATION_ROWS)
CHOOSE = dict(FAST, validation_fraction=0.2)


def test_a_bilingual_set_where_tfidf_alone_is_enough_deploys_tfidf(settings, tiny_bert, bilingual):
    """Two languages, but tfidf reads both perfectly: the combination is not worth a second model, so the
    version is the tfidf model, with the transformer's and the combination's figures beside it."""
    train, evaluation = bilingual
    result = run_training(train, evaluation, name="mixed", settings=settings,
                          cfg=TrainConfig(base_model=str(tiny_bert), **CHOOSE))
    assert result["recommended"] == "tfidf" and result["family"] == "tfidf"
    assert result["validation"]["rows"] >= MIN_VALIDATION_ROWS and "not worth serving both" in result["reason"]
    assert set(result["candidates"]) == {"transformer", "tfidf", "ensemble"}
    assert result["macro_f1"] == result["candidates"]["tfidf"]["macro_f1"] == 1.0
    assert set(result["per_language"]) == {"en", "zh"}
    folder = Path(result["path"])
    assert (folder / "tfidf.joblib").is_file() and not (folder / "model.safetensors").exists()
    card = (folder / "card.md").read_text(encoding="utf-8")
    assert "**Deploy: tfidf.**" in card and "| metric | this model | transformer | ensemble |" in card
    assert "## Validation (what the choice rests on)" in card
    row = Registry.from_settings(settings).get("mixed:1")
    assert (row.family, row.base_model, row.metrics["recommended"]) == ("tfidf", "tfidf", "tfidf")
    assert evaluate("mixed:1", evaluation, settings=settings)["macro_f1"] == result["macro_f1"]


def test_an_ensemble_is_one_version_that_eval_scores_as_reported(settings, tiny_bert, bilingual):
    train, evaluation = bilingual
    result = run_training(train, evaluation, name="both", settings=settings,
                          cfg=TrainConfig(base_model=str(tiny_bert), deploy="ensemble", **CHOOSE))
    assert result["family"] == "ensemble" and result["recommended"] == "tfidf"  # asked for, not advised
    assert "Deployed: ensemble, as the training options asked" in result["reason"]
    assert result["macro_f1"] == result["candidates"]["ensemble"]["macro_f1"]
    folder = Path(result["path"])
    meta = json.loads((folder / "modelshop.json").read_text())
    assert (meta["family"], meta["languages"], meta["parts"]["tfidf"]) == ("ensemble", ["en", "zh"], "tfidf")
    assert (folder / "transformer" / "model.safetensors").is_file() and (folder / "tfidf" / "tfidf.joblib").is_file()
    row = Registry.from_settings(settings).get("both:1")
    assert row.family == "ensemble" and "tfidf/tfidf.joblib" in row.files_sha256
    assert "## Combination" in (folder / "card.md").read_text(encoding="utf-8")
    # what eval scores is the registered version, loaded as the server loads it
    again = evaluate("both:1", evaluation, settings=settings)
    assert again["macro_f1"] == pytest.approx(result["macro_f1"], abs=1e-4)
    assert again["per_language"] == result["per_language"]
    predictor = load_predictor(folder, registered=row)
    assert isinstance(predictor, EnsemblePredictor) and predictor.labels == LABELS
    texts = ["Where is my parcel, it is urgent", "我要退款，谢谢"]
    codes = text_languages(texts, meta["languages"])
    expected = mix(predictor.transformer.predict_proba(texts), predictor.tfidf.predict_proba(texts), codes,
                   meta["weights"])
    assert predictor.predict_proba(texts) == pytest.approx(expected, abs=1e-6)


def test_a_changed_tfidf_part_is_refused(settings, tiny_bert, bilingual):
    train, evaluation = bilingual
    result = run_training(train, evaluation, name="both", settings=settings,
                          cfg=TrainConfig(base_model=str(tiny_bert), deploy="ensemble", **{**CHOOSE, "epochs": 1}))
    part = Path(result["path"]) / "tfidf" / "tfidf.joblib"
    part.write_bytes(part.read_bytes() + b"\0")
    from modelshop.errors import ModelError

    with pytest.raises(ModelError, match="model file tfidf.joblib of both:1 changed since registration"):
        evaluate("both:1", evaluation, settings=settings)


@pytest.mark.parametrize(("options", "match"), [
    ({"deploy": "best"}, 'deploy: must be recommended, transformer, tfidf or ensemble, got "best"'),
    ({"deploy": "ensemble", "tfidf_baseline": False}, "deploy: ensemble needs the tfidf model"),
    ({"deploy": "transformer", "base_model": "tfidf"}, 'deploy: transformer needs a transformer base model'),
])
def test_deploy_options_that_cannot_work_are_refused(options, match):
    with pytest.raises(ValidationError, match=match):
        TrainConfig(**options)


def test_tfidf_reads_chinese_characters_as_words_and_english_as_before():
    import re

    from modelshop.train.tfidf import TOKEN_PATTERN

    assert re.findall(TOKEN_PATTERN, "我的快递DD2024号 can't log_in café") == [
        "我", "的", "快", "递", "DD2024", "号", "can", "t", "log_in", "café"]
    english = "I can't log in, order #4512 is late"
    assert re.findall(TOKEN_PATTERN, english) == re.findall(r"(?u)\b\w+\b", english)
