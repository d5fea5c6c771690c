"""The registry: versions, stages, lineage, and no half-written version ever visible."""

from __future__ import annotations

import json

import pytest

from modelshop.errors import NotFound, ValidationError
from modelshop.registry import META_FILE, Registry


def _build(reg: Registry, marker: str = "x"):
    folder = reg.incoming_dir()
    (folder / META_FILE).write_text(json.dumps({"family": "tfidf", "labels": ["a", "b"]}))
    (folder / "weights.bin").write_text(marker)
    return folder


def _register(reg: Registry, name: str = "m", marker: str = "x"):
    return reg.register(name, _build(reg, marker), family="tfidf", format="sklearn", base_model="tfidf",
                        labels=["a", "b"], multi_label=False, metrics={"macro_f1": 0.5})


def test_first_version_is_production_later_ones_wait(settings):
    reg = Registry.from_settings(settings)
    v1, v2 = _register(reg), _register(reg)
    assert (v1.version, v1.stage, v2.version, v2.stage) == (1, "production", 2, "staging")
    assert reg.get("m").version == 1  # the bare name means production
    reg.promote("m:2")
    assert [(r.version, r.stage) for r in reg.list("m")] == [(1, "archived"), (2, "production")]
    assert (reg.path(reg.get("m")) / "weights.bin").read_text() == "x"


def test_unknown_names_and_versions_say_what_exists(settings):
    reg = Registry.from_settings(settings)
    with pytest.raises(NotFound, match="no model is registered yet"):
        reg.get("nope")
    _register(reg, "sentiment")
    with pytest.raises(NotFound, match='did you mean "sentiment"'):
        reg.get("sentimnt")
    with pytest.raises(NotFound, match="has no version 7"):
        reg.get("sentiment:7")
    with pytest.raises(ValidationError, match="NAME:VERSION"):
        reg.get("sentiment:latest")
    with pytest.raises(ValidationError, match="not one of staging, production, archived"):
        reg.promote("sentiment:1", "prod")


def test_crash_between_move_and_commit_leaves_nothing_visible(settings):
    """An orphan folder (files moved, row never committed) is invisible and replaced by the next save."""
    reg = Registry.from_settings(settings)
    orphan = settings.models_dir / "m" / "v1"
    orphan.mkdir(parents=True)
    (orphan / "weights.bin").write_text("half")
    with pytest.raises(NotFound):
        reg.get("m")
    row = _register(reg, marker="whole")
    assert row.version == 1
    assert (reg.path(row) / "weights.bin").read_text() == "whole"


def test_unfinished_folder_is_refused(settings):
    reg = Registry.from_settings(settings)
    folder = reg.incoming_dir()
    with pytest.raises(ValidationError, match="not a finished model folder"):
        reg.register("m", folder, family="tfidf", format="sklearn", base_model="tfidf", labels=["a"],
                     multi_label=False, metrics={})
    assert reg.list() == []


def test_bad_names_are_refused(settings):
    with pytest.raises(ValidationError, match="not allowed"):
        _register(Registry.from_settings(settings), name="../evil")
