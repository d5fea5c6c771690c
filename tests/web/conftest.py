"""Web fixtures: a registry with one tfidf model, plans, a channel, and the real app with every router."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from modelshop.settings import Settings

ADMIN_KEY = "adm_" + "Kp3zQ" * 8
PLANS = ({"code": "payg", "name": "Pay as you go", "currency": "USD",
          "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.002"}]},
         {"code": "free", "name": "Free", "currency": "USD", "quota": {"metric": "requests", "limit": 100}})


@pytest.fixture(scope="session")
def shop_home(tmp_path_factory, toy_files_session):
    """A home with the tfidf model "support" in production (trained once per session)."""
    from modelshop.train import TrainConfig, run_training

    home = tmp_path_factory.mktemp("web-home")
    train, evaluation = toy_files_session
    run_training(train, evaluation, name="support", settings=Settings(home=home, progress=False),
                 cfg=TrainConfig(base_model="tfidf"))
    return home


@pytest.fixture(scope="session")
def toy_files_session(tmp_path_factory):
    from tests.serve.helpers import write_toy

    return write_toy(tmp_path_factory.mktemp("web-toy"))


@pytest.fixture
def shop_settings(shop_home, tmp_path) -> Settings:
    """Settings over a copy of the session's home, so each test has its own database."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(shop_home, home)
    return Settings(home=home, progress=False, admin_key=SecretStr(ADMIN_KEY), serve_gate="billing",
                    reload_interval_s=0.0, torch_threads=1, storefront_demo_rpm=3,
                    storefront_signup_rpm=3)


def build_app(settings: Settings):
    """`create_app` with the billing gate and every router: billing's, channels' and the web's."""
    from modelshop.billing import BillingGate
    from modelshop.billing.accounts import create_plan
    from modelshop.billing.plans import parse_plan
    from modelshop.db import get_database
    from modelshop.platform import build_app

    db = get_database(settings)
    for spec in PLANS:
        create_plan(db, parse_plan(spec), actor="test")
    app = build_app(settings, gate=BillingGate(settings, db))
    return app


@pytest.fixture
def app(shop_settings):
    return build_app(shop_settings)


BOT = "shop-bot"


@pytest.fixture(scope="session")
def bot_home(shop_home, tmp_path_factory):
    """`shop_home` plus knowledge base "shop-faq" (real minilm embeddings) and the storefront bot "shop-bot"."""
    import shutil

    from modelshop.apps import faq, support
    from tests.apps.conftest import write_faq

    home = tmp_path_factory.mktemp("web-bot") / "home"
    shutil.copytree(shop_home, home)
    settings = Settings(home=home, progress=False, torch_threads=1)
    faq.build_kb(write_faq(home.parent / "faq.jsonl"), "shop-faq", settings=settings)
    # the toy intent model knows only good/bad: no hand-off intents
    support.create_bot(BOT, "support", "shop-faq", handoff_intents=[], storefront=True, settings=settings)
    return home


@pytest.fixture
def bot_settings(bot_home, tmp_path) -> Settings:
    """Like `shop_settings`, over a copy of `bot_home`: the storefront has a chat bot."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(bot_home, home)
    return Settings(home=home, progress=False, admin_key=SecretStr(ADMIN_KEY), serve_gate="billing",
                    reload_interval_s=0.0, torch_threads=1, storefront_demo_rpm=3, storefront_signup_rpm=3)
