"""The public model card and figures carry no file path of the server (`modelshop.web.card`), on the
files training really wrote: the card's Markdown, metrics.json and profile.json."""

from __future__ import annotations

import json
import re

from modelshop.registry.tables import ModelVersion
from modelshop.web.card import public, public_model, strip_paths

ABSOLUTE = re.compile(r"(?<![\w:/.])(/|~/|[A-Za-z]:\\)[^\s`'\"]*[/\\]")  # a path with a folder in it


def test_the_card_training_wrote_keeps_its_content_but_no_path(shop_home, toy_files_session):
    folder = shop_home / "models" / "support" / "v1"
    card = (folder / "card.md").read_text(encoding="utf-8")
    data_dir = str(toy_files_session[0].parent)
    assert data_dir in card and ABSOLUTE.search(card)  # what training writes: the operator's own paths
    shown = strip_paths(card)
    assert data_dir not in shown and not ABSOLUTE.search(shown), ABSOLUTE.search(shown)
    assert "- **Training data**: `train.jsonl` (sha256" in shown and "- **Evaluation data**: `eval.jsonl`" in shown
    kept = [line for line in card.splitlines() if "/" not in line and "\\" not in line]
    assert kept and all(line in shown.splitlines() for line in kept)  # every other line as it was


def test_the_figures_and_profile_keep_their_numbers_but_no_path(shop_home, toy_files_session):
    folder = shop_home / "models" / "support" / "v1"
    for name in ("metrics.json", "profile.json"):
        raw = json.loads((folder / name).read_text(encoding="utf-8"))
        assert str(toy_files_session[0].parent) in json.dumps(raw) and ABSOLUTE.search(json.dumps(raw))
        shown = public(raw)
        text = json.dumps(shown, ensure_ascii=False)
        assert str(toy_files_session[0].parent) not in text and str(shop_home) not in text, name
        assert not ABSOLUTE.search(text), (name, ABSOLUTE.search(text))
    metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    shown = public(metrics)
    assert shown["accuracy"] == metrics["accuracy"] and shown["per_class"] == metrics["per_class"]
    assert shown["data"]["train"] == "train.jsonl" and shown["data"]["train_sha256"] == metrics["data"]["train_sha256"]


def test_paths_become_their_last_part_and_nothing_else_changes():
    assert strip_paths("base: `/home/ann/My Models/bert tiny/`") == "base: `bert tiny`"
    assert strip_paths("checkpoint_dir: /srv/ckpt/run3") == "checkpoint_dir: run3"
    assert strip_paths(r"data C:\Users\ann\train.csv and \\nas\share\eval.csv") == "data train.csv and eval.csv"
    assert strip_paths("file:///srv/a/b.jsonl, ~/data/y.csv") == "b.jsonl, y.csv"
    assert strip_paths("`/d/train.jsonl (20% held out, seed 42)`") == "`train.jsonl (20% held out, seed 42)`"
    for same in ("https://huggingface.co/bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2",
                 "p50 / p95", "2026/01/02", "and/or", "31 samples/s", "minilm", ""):
        assert strip_paths(same) == same


def test_a_model_row_shows_its_base_model_without_the_folder():
    row = ModelVersion(name="support", version=3, stage="production", family="transformer", format="pytorch",
                       base_model="/srv/checkpoints/acme-bert-tiny", path="support/v3", multi_label=False,
                       labels=["bad", "good"], metrics={})
    shown = public_model(row)
    assert (shown["base_model"], shown["ref"], shown["labels"]) == ("acme-bert-tiny", "support:3", ["bad", "good"])
    row.base_model = "bert-base-chinese"
    assert public_model(row)["base_model"] == "bert-base-chinese"
