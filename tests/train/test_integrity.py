"""A pickled model file is loaded only if it is the file registered: swapped files are refused unread."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import joblib
import pytest
from fastapi.testclient import TestClient

from modelshop.errors import ModelError
from modelshop.inference import load_predictor
from modelshop.platform import build_app
from modelshop.registry import META_FILE, Registry
from modelshop.registry.tables import ModelVersion
from modelshop.train import TrainConfig, run_training
from modelshop.train.scoring import predict
from tests.support import AUTH, make_settings

CHANGED = (r"model file tfidf\.joblib of {what} changed since registration "
           r"\(sha256 [0-9a-f]{{64}}, registered [0-9a-f]{{64}}\); re-register it")


class _Payload:
    """Unpickling this writes a file: what a model file swapped by someone else could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.write_text, (self.marker, "unpickled")


def _train_fast(settings, toy_data) -> tuple[Registry, ModelVersion, Path]:
    run_training(*toy_data, name="fast", cfg=TrainConfig(base_model="tfidf"), settings=settings)
    registry = Registry.from_settings(settings)
    row = registry.get("fast:1")
    return registry, row, registry.path(row)


def _swap(folder: Path, marker: Path, *, cover_tracks: bool) -> None:
    """Replace the model with the payload; `cover_tracks` also rewrites the hash kept in the folder."""
    joblib.dump(_Payload(marker), folder / "tfidf.joblib")
    if cover_tracks:
        meta = json.loads((folder / META_FILE).read_text())
        meta["files_sha256"]["tfidf.joblib"] = hashlib.sha256((folder / "tfidf.joblib").read_bytes()).hexdigest()
        (folder / META_FILE).write_text(json.dumps(meta))


def test_registration_records_the_hash_the_loader_checks(settings, toy_data):
    _, row, folder = _train_fast(settings, toy_data)
    digest = hashlib.sha256((folder / "tfidf.joblib").read_bytes()).hexdigest()
    assert row.files_sha256["tfidf.joblib"] == digest
    assert json.loads((folder / META_FILE).read_text())["files_sha256"] == row.files_sha256
    assert predict("fast", ["excellent, love it"], settings=settings)[0]["label"] == "good"


def test_a_swapped_model_file_is_refused_and_never_unpickled(settings, toy_data, tmp_path, capsys):
    registry, row, folder = _train_fast(settings, toy_data)
    marker = tmp_path / "pwned"
    _swap(folder, marker, cover_tracks=False)
    with pytest.raises(ModelError, match=CHANGED.format(what="fast:1")):
        predict("fast", ["x"], settings=settings)
    with pytest.raises(ModelError, match=CHANGED.format(what=f".*{row.path}")):  # the folder alone: its own copy
        load_predictor(folder)

    _swap(folder, marker, cover_tracks=True)  # the row in the database still has the registered hash
    with pytest.raises(ModelError, match=CHANGED.format(what="fast:1")):
        load_predictor(folder, registered=registry.get("fast:1"))
    from modelshop.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", "fast", "great"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model file tfidf.joblib of fast:1 changed since registration") and "\n" not in err
    assert not marker.exists()


def test_the_server_refuses_a_swapped_file_even_with_the_folder_hash_rewritten(tmp_path, toy_data):
    settings = make_settings(tmp_path / "home")
    _, _, folder = _train_fast(settings, toy_data)
    marker = tmp_path / "pwned"
    _swap(folder, marker, cover_tracks=True)
    with TestClient(build_app(settings)) as c:
        r = c.post("/models/fast", json={"inputs": "great"}, headers=AUTH)
    assert r.status_code == 500 and r.json()["error_type"] == "model"
    assert "model file tfidf.joblib of fast:1 changed since registration" in r.json()["error"]
    assert not marker.exists()


def test_versions_registered_before_hashes_still_load_with_a_warning(settings, toy_data, caplog):
    registry, row, folder = _train_fast(settings, toy_data)
    with registry.db.session() as s:  # as a version registered by the earlier code was stored
        s.get(ModelVersion, row.id).files_sha256 = None
    meta = json.loads((folder / META_FILE).read_text())
    del meta["files_sha256"]
    (folder / META_FILE).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="modelshop.inference"):
        assert predict("fast", ["excellent, love it"], settings=settings)[0]["label"] == "good"
    assert "model file tfidf.joblib of fast:1 has no SHA-256 recorded" in caplog.text
