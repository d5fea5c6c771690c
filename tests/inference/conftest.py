"""Inference fixtures: the tiny BERT as a two-label classifier folder, registered as trained at 16 tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, tiny_bert) -> Path:
    """A modelshop model folder: the tiny BERT (128 positions) with a random 2-label head, max_length 16."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tiny-classifier")
    config = BertConfig.from_pretrained(tiny_bert, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert).save_pretrained(folder)
    (folder / "modelshop.json").write_text(json.dumps(
        {"family": "transformer", "format": "pytorch", "labels": ["bad", "good"], "multi_label": False,
         "max_length": 16}))
    return folder
