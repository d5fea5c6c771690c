"""Serving fixtures: a registry with a tiny BERT ("toy") and a tfidf model ("fast"), and apps over it."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelshop.settings import Settings
from tests.support import FAST, make_settings, write_toy


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory) -> tuple[Path, Path]:
    return write_toy(tmp_path_factory.mktemp("toy-data"))


@pytest.fixture(scope="session")
def served_settings(tmp_path_factory, tiny_bert, toy_files) -> Settings:
    """A registry (shared by the session: read-only) with toy:1 (tiny BERT, max_length 32) and fast:1 (tfidf)."""
    from modelshop.train import TrainConfig, run_training

    settings = make_settings(tmp_path_factory.mktemp("serve-home"))
    train, evaluation = toy_files
    run_training(train, evaluation, name="toy", settings=settings,
                 cfg=TrainConfig(base_model=str(tiny_bert), max_length=32, **FAST))
    run_training(train, evaluation, name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    return settings


@pytest.fixture(scope="session")
def client(served_settings):
    """An in-process client of the app over the shared registry (lifespan run once per session)."""
    from fastapi.testclient import TestClient

    from modelshop.platform import build_app

    with TestClient(build_app(served_settings)) as c:
        yield c


@pytest.fixture
def fresh_settings(tmp_path, toy_files) -> Settings:
    """A registry of its own with one tfidf model, "fast" (for tests that register or promote)."""
    from modelshop.train import TrainConfig, run_training

    settings = make_settings(tmp_path / "home")
    run_training(toy_files[0], toy_files[1], name="fast", settings=settings, cfg=TrainConfig(base_model="tfidf"))
    return settings
