"""Apps fixtures: one home (session-wide) with a small shop FAQ built with the real minilm embedder and a
tfidf intent model trained in seconds on the bundled support messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from modelshop.settings import Settings
from tests.support import ADMIN_KEY, write_faq


def home_settings(home: Path, **overrides) -> Settings:
    """One model worker, on a thread: the apps' servers start no worker processes unless a test asks."""
    return Settings(**{"home": home, "progress": False, "admin_key": SecretStr(ADMIN_KEY), "reload_interval_s": 0.0,
                       "serve_workers": 1, **overrides})


@pytest.fixture(scope="session")
def shop_faq(tmp_path_factory) -> Path:
    return write_faq(tmp_path_factory.mktemp("faq") / "shop.jsonl")


@pytest.fixture(scope="session")
def world(tmp_path_factory, shop_faq) -> Settings:
    """A home with knowledge base "shop" and intent model "intents" (tfidf, the demo's 8 intents)."""
    from modelshop.apps.faq import build_kb
    from modelshop.demo import DATA
    from modelshop.train import TrainConfig, run_training

    settings = home_settings(tmp_path_factory.mktemp("apps-home"))
    build_kb(shop_faq, "shop", settings=settings)
    run_training(DATA, name="intents", cfg=TrainConfig(base_model="tfidf", validation_fraction=0.0), settings=settings)
    return settings
