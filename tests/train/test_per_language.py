"""Figures per language (`per_language`) from `train` and `eval` on mixed-language data: the JSON, the
stored metrics, the model card and the storefront page; none on data in one language."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.errors import ValidationError
from modelshop.train import TrainConfig, evaluate, run_training
from modelshop.train.metrics import MIN_LANGUAGE_ROWS, compute_metrics
from tests.support import make_settings
from tests.train.mixed import write_mixed


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory):
    """A tfidf model trained on the mixed files, in production in its own home."""
    folder = tmp_path_factory.mktemp("mixed")
    train, evaluation = write_mixed(folder)
    settings = make_settings(folder / "home")
    result = run_training(train, evaluation, name="mixed", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    return settings, result, evaluation


def test_train_reports_figures_per_language(mixed_model):
    settings, result, _ = mixed_model
    per = result["per_language"]
    assert list(per) == ["en", "zh"] and per["en"]["n"] == per["zh"]["n"] == 20
    for m in per.values():
        assert set(m) == {"n", "accuracy", "macro_f1"} and 0.5 <= m["accuracy"] <= 1 and 0 < m["macro_f1"] <= 1
    # the two languages' rows make up the whole evaluation set: the overall accuracy is their mean here
    assert result["accuracy"] == pytest.approx((per["en"]["accuracy"] + per["zh"]["accuracy"]) / 2, abs=1e-4)
    folder = Path(result["path"])
    assert json.loads((folder / "metrics.json").read_text())["per_language"] == per
    card = (folder / "card.md").read_text(encoding="utf-8")
    table = card[card.index("### Per language"):].split("\n\n")[1].splitlines()
    assert table[0] == "| language | rows | accuracy | macro-F1 |"  # tfidf itself: no baseline column
    assert table[2:] == [f"| {c} | 20 | {m['accuracy']:.3f} | {m['macro_f1']:.3f} |" for c, m in per.items()]
    assert "- languages: en 40 (50%), zh 40 (50%)" in card


def test_eval_reports_the_same_figures_per_language(mixed_model):
    settings, result, evaluation = mixed_model
    scored = evaluate("mixed:1", evaluation, settings=settings)
    assert scored["per_language"] == result["per_language"]


def test_the_storefront_page_shows_the_per_language_table(mixed_model, tmp_path):
    import shutil

    from modelshop.platform import build_app

    settings, result, _ = mixed_model
    home = tmp_path / "home"
    shutil.copytree(settings.home, home)
    with TestClient(build_app(make_settings(home))) as client:
        html = client.get("/store/mixed").text
    table = html[html.index('<table id="per-language">'):]
    table = table[:table.index("</table>")]
    for code, m in result["per_language"].items():
        assert f'<td>{code}</td><td class="num">20</td><td class="num">{m["accuracy"]:.4f}</td>' in table


def test_one_language_gives_no_per_language(settings, toy_data):
    train, evaluation = toy_data
    result = run_training(train, evaluation, name="english", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    assert "per_language" not in result
    folder = Path(result["path"])
    assert "per_language" not in json.loads((folder / "metrics.json").read_text())
    assert "### Per language" not in (folder / "card.md").read_text(encoding="utf-8")
    assert "per_language" not in evaluate("english:1", evaluation, settings=settings)


def single(labels: list[str], truth: list[str], pred: list[str]) -> np.ndarray:
    """One-hot probabilities of the predicted labels."""
    return np.eye(len(labels))[[labels.index(p) for p in pred]]


def test_per_language_figures_and_which_languages_get_them():
    labels = ["a", "b", "c"]
    n = MIN_LANGUAGE_ROWS
    # en: all right; zh: "a" always right, "b" always predicted as "a"; fr: too few rows for figures
    truth = ["a", "b"] * (n // 2) + ["a", "b"] * (n // 2) + ["c"] * 3
    pred = ["a", "b"] * (n // 2) + ["a", "a"] * (n // 2) + ["c"] * 3
    langs = ["en"] * n + ["zh"] * n + ["fr"] * 3
    m = compute_metrics(truth, single(labels, truth, pred), labels, languages=langs)
    # zh's macro-F1 averages "a" (2/3) and "b" (0), not "c", which zh neither has nor is predicted
    assert m["per_language"] == {"en": {"n": n, "accuracy": 1.0, "macro_f1": 1.0},
                                 "zh": {"n": n, "accuracy": 0.5, "macro_f1": round((2 / 3 + 0) / 2, 4)}}
    # one language with enough rows (the other too small, or undetermined): no per-language figures
    few = ["en"] * n + ["zh"] * (n - 1) + ["und"] * 4
    assert "per_language" not in compute_metrics(truth, single(labels, truth, pred), labels, languages=few)
    assert "per_language" not in compute_metrics(truth, single(labels, truth, pred), labels)
    with pytest.raises(ValidationError, match="languages for 43 rows; give one code per row"):
        compute_metrics(truth, single(labels, truth, pred), labels, languages=["en"])


def test_per_language_figures_for_multi_label():
    labels = ["x", "y"]
    n = MIN_LANGUAGE_ROWS
    truth = [["x"]] * n + [["x", "y"]] * n
    probs = np.array([[0.9, 0.1]] * n + [[0.9, 0.1]] * n)  # zh misses every "y"
    m = compute_metrics(truth, probs, labels, multi_label=True, languages=["en"] * n + ["zh"] * n)
    assert m["per_language"]["en"] == {"n": n, "accuracy": 1.0, "macro_f1": 1.0}
    assert m["per_language"]["zh"] == {"n": n, "accuracy": 0.0, "macro_f1": 0.5}


def test_the_card_puts_the_tfidf_baseline_beside_a_transformer_per_language():
    from modelshop.train.card import model_card

    per = {"en": {"n": 20, "accuracy": 0.95, "macro_f1": 0.94}, "zh": {"n": 20, "accuracy": 0.8, "macro_f1": 0.7}}
    metrics = {"n": 40, "accuracy": 0.875, "macro_f1": 0.82, "per_class": {}, "per_language": per}
    baseline = {"n": 40, "accuracy": 0.85, "macro_f1": 0.8,
                "per_language": {"en": {"n": 20, "accuracy": 0.9, "macro_f1": 0.85}}}
    card = model_card(name="mixed", base_model="minilm", family="transformer", labels=["a", "b"], multi_label=False,
                      metrics=metrics, baseline=baseline, recommended="transformer", reason="Better.", profile=None,
                      config={}, data={}, fit=None, charts={})
    table = card[card.index("### Per language"):].split("\n\n")[1].splitlines()
    assert table == ["| language | rows | accuracy | macro-F1 | tfidf macro-F1 |", "| --- | --- | --- | --- | --- |",
                     "| en | 20 | 0.950 | 0.940 | 0.850 |", "| zh | 20 | 0.800 | 0.700 | — |"]
