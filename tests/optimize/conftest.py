"""A registry with one fine-tuned tiny BERT ("toy:1") to compress, and the eval file to measure on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelshop.settings import Settings
from tests.support import FAST, make_settings


@pytest.fixture(scope="module")
def toy_registry(tmp_path_factory, tiny_bert) -> tuple[Settings, Path]:
    from modelshop.train import TrainConfig, run_training

    folder = tmp_path_factory.mktemp("optimize")
    rows = [{"text": t, "label": "good"} for t in ("great product", "love it", "excellent service", "very happy",
                                                    "superb quality", "works perfectly")]
    rows += [{"text": t, "label": "bad"} for t in ("broken on arrival", "awful service", "refund me now",
                                                   "very bad quality", "rude staff", "worst purchase ever")]
    train, evaluation = folder / "train.jsonl", folder / "eval.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows * 3) + "\n")
    evaluation.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    settings = make_settings(folder / "home")
    run_training(train, evaluation, name="toy", settings=settings,
                 cfg=TrainConfig(base_model=str(tiny_bert), max_length=32, **FAST))
    run_training(train, evaluation, name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    return settings, evaluation
