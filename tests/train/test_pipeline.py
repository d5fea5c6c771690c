"""Training end to end on a tiny real BERT and on tfidf: files, registry, figures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelshop.data import load_dataset
from modelshop.errors import ValidationError
from modelshop.inference import load_predictor
from modelshop.registry import Registry
from modelshop.train import TrainConfig, evaluate, run_training, score_file
from modelshop.train.pipeline import RunData, TrainResult, _train_into
from tests.support import FAST


def test_tiny_bert_trains_evaluates_and_registers(settings, tiny_bert, toy_data):
    train, evaluation = toy_data
    result = run_training(train, evaluation, name="toy", cfg=TrainConfig(base_model=str(tiny_bert), **FAST),
                          settings=settings)
    assert (result["version"], result["stage"], result["family"]) == (1, "production", "transformer")
    for key in ("accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece", "per_class", "baseline", "recommended"):
        assert key in result
    assert set(result["per_class"]) == {"bad", "good"}
    assert result["baseline"]["macro_f1"] >= 0.9  # tfidf separates this toy data
    assert result["recommended"] in {"transformer", "tfidf"}
    folder = Registry.from_settings(settings).path(Registry.from_settings(settings).get("toy"))
    for name in ("model.safetensors", "tokenizer.json", "modelshop.json", "metrics.json", "card.md",
                 "confusion_matrix.png", "confusion_matrix.json", "training_curves.png", "profile.json"):
        assert (folder / name).is_file(), name
    card = (folder / "card.md").read_text()
    assert "Recommendation" in card and "tfidf baseline" in card
    history = json.loads((folder / "history.json").read_text())
    assert len(history["epochs"]) >= 1 and history["loss"]
    # the registered files reproduce the reported figures
    again = evaluate("toy", evaluation, settings=settings)
    assert again["macro_f1"] == pytest.approx(result["macro_f1"], abs=1e-4)
    assert not list((settings.models_dir / ".incoming").iterdir())


def test_tfidf_model_is_first_class(settings, toy_data):
    train, evaluation = toy_data
    result = run_training(train, evaluation, name="fast", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    assert result["family"] == "tfidf" and result["baseline"] is None
    assert result["macro_f1"] >= 0.9
    predictor = load_predictor(Registry.from_settings(settings).path(Registry.from_settings(settings).get("fast")))
    assert predictor.predict(["terrible, broken, awful", "excellent, love it"]) == ["bad", "good"]


def test_checkpoints_and_resume(settings, tiny_bert, toy_data, tmp_path):
    train, evaluation = toy_data
    ckpt = tmp_path / "run"
    cfg = TrainConfig(base_model=str(tiny_bert), checkpoint_dir=ckpt, early_stopping_patience=0,
                      **{**FAST, "epochs": 1})
    run_training(train, evaluation, name="r", cfg=cfg, settings=settings)
    state = json.loads((ckpt / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 0
    resumed = run_training(train, evaluation, name="r", cfg=cfg.replace(epochs=3, resume=True), settings=settings)
    history = json.loads((Path(resumed["path"]) / "history.json").read_text())
    epochs = [e["epoch"] for e in history["epochs"]]
    assert epochs == [1, 2, 3]  # epoch 1 from the first run, 2 and 3 after resuming


def test_multi_label(settings, tiny_bert, tmp_path):
    rows = []
    for i in range(12):
        rows += [{"text": f"the delivery was late {i}", "labels": ["delivery"]},
                 {"text": f"refund my late delivery {i}", "labels": ["delivery", "refund"]},
                 {"text": f"please refund the charge {i}", "labels": ["refund"]}]
    path = tmp_path / "ml.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    result = run_training(path, name="ml", cfg=TrainConfig(base_model=str(tiny_bert), **FAST), settings=settings)
    assert set(result["per_class"]) == {"delivery", "refund"}
    assert "per_label" in result["confusion_matrix"]


def test_batch_scoring_streams_to_jsonl(settings, toy_data, tmp_path):
    train, evaluation = toy_data
    run_training(train, evaluation, name="fast", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    src = tmp_path / "in.csv"
    src.write_text("id,text\n" + "\n".join(f"{i},excellent and great {i}" for i in range(1200)) + "\n")
    out = tmp_path / "out.jsonl"
    result = score_file("fast", src, out, chunk=500, settings=settings, progress=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["rows"] == len(rows) == 1200
    assert rows[7]["id"] == "7" and rows[7]["label"] == "good"


def test_one_class_only(settings, tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text("\n".join(json.dumps({"text": f"t {i}", "label": "same"}) for i in range(10)))
    with pytest.raises(ValidationError, match="one class only"):
        run_training(path, name="x", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    assert Registry.from_settings(settings).list() == []


def test_eval_labels_unseen_in_training(settings, toy_data, tmp_path):
    train, _ = toy_data
    evaluation = tmp_path / "e.jsonl"
    evaluation.write_text(json.dumps({"text": "meh", "label": "neutral"}) + "\n")
    with pytest.raises(ValidationError, match="eval labels not in the training data: neutral"):
        run_training(train, evaluation, name="x", cfg=TrainConfig(base_model="tfidf"), settings=settings)


def test_unknown_base_model(settings, toy_data):
    train, evaluation = toy_data
    with pytest.raises(ValidationError, match='unknown base model "./nowhere"'):
        run_training(train, evaluation, name="x", cfg=TrainConfig(base_model="./nowhere"), settings=settings)
    assert Registry.from_settings(settings).list() == []
    assert not (settings.models_dir / ".incoming").exists() or not list((settings.models_dir / ".incoming").iterdir())


# what `modelshop train --json` prints: the CLI's contract, key for key and in this order
REPORT_KEYS = ["name", "version", "stage", "family", "n", "accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece",
               "per_class", "confusion_matrix", "baseline", "candidates", "recommended", "reason", "validation",
               "max_length", "path", "card", "charts", "fit", "search", "wall_seconds"]
STORED_KEYS = ["n", "accuracy", "macro_f1", "micro_f1", "weighted_f1", "ece", "per_class", "confusion_matrix",
               "baseline", "candidates", "recommended", "reason", "validation", "fit", "max_length", "config", "data",
               "search"]


def test_the_report_and_metrics_json_keep_their_keys(settings, toy_data):
    train, evaluation = toy_data
    result = run_training(train, evaluation, name="k", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    assert list(result) == REPORT_KEYS
    assert list(json.loads((Path(result["path"]) / "metrics.json").read_text())) == STORED_KEYS
    assert list(result["charts"]) == ["confusion matrix"] and result["fit"] is None and result["search"] is None


@pytest.mark.parametrize("base", ["tfidf", "tiny"])
def test_train_into_returns_a_train_result(settings, toy_data, tiny_bert, tmp_path, base):
    train_path, eval_path = toy_data
    train, evaluation = load_dataset(train_path), load_dataset(eval_path)
    is_tfidf = base == "tfidf"
    cfg = TrainConfig(base_model="tfidf" if is_tfidf else str(tiny_bert), **({} if is_tfidf else {**FAST, "epochs": 1}))
    data = RunData(fit=train, val=None, evaluation=evaluation, label_names=train.label_names,
                   multi_label=False, max_length=32, balanced=False)
    build, runs = tmp_path / "build", tmp_path / "runs"
    build.mkdir()
    result = _train_into(build, cfg, data, progress=False, runs_dir=runs)
    assert isinstance(result, TrainResult)
    assert result.metrics["n"] == len(evaluation) and set(result.metrics["per_class"]) == {"bad", "good"}
    assert result.meta["family"] == ("tfidf" if is_tfidf else "transformer")
    assert result.meta["labels"] == ["bad", "good"] and result.search is None
    for file in result.charts.values():
        assert (build / file).is_file(), file
    if is_tfidf:  # the model is the baseline: not reported twice
        assert result.baseline is None and result.fit is None and list(result.charts) == ["confusion matrix"]
    else:
        assert result.baseline["macro_f1"] >= 0.9 and result.meta["max_length"] == 32
        assert result.fit["best_epoch"] == 1 and result.fit["class_weights"] is False
        assert list(result.charts) == ["confusion matrix", "training curves"]
        assert runs.is_dir() and not (runs / build.name).exists()  # scratch checkpoints: under runs_dir, then removed
