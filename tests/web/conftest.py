"""Web fixtures: a registry with one tfidf model, plans, a storefront bot, and the real app with every router
(tests/web/helpers.py builds it)."""

from __future__ import annotations

import shutil

import pytest

from modelshop.settings import Settings
from tests.support import make_settings, write_faq, write_toy
from tests.web.helpers import BOT, build_app


def web_settings(home) -> Settings:
    """The web tests' settings: billing gate, one torch thread, storefront limits small enough to reach."""
    # one model worker on a thread: the pages need no worker processes (the serve tests cover them)
    return make_settings(home, serve_gate="billing", torch_threads=1, serve_workers=1, storefront_demo_rpm=3,
                         storefront_signup_rpm=3)


@pytest.fixture(scope="session")
def toy_files_session(tmp_path_factory):
    return write_toy(tmp_path_factory.mktemp("web-toy"))


@pytest.fixture(scope="session")
def shop_home(tmp_path_factory, toy_files_session):
    """A home with the tfidf model "support" in production (trained once per session)."""
    from modelshop.train import TrainConfig, run_training

    home = tmp_path_factory.mktemp("web-home")
    train, evaluation = toy_files_session
    run_training(train, evaluation, name="support", settings=make_settings(home), cfg=TrainConfig(base_model="tfidf"))
    return home


@pytest.fixture
def shop_settings(shop_home, tmp_path) -> Settings:
    """Settings over a copy of the session's home, so each test has its own database."""
    home = tmp_path / "home"
    shutil.copytree(shop_home, home)
    return web_settings(home)


@pytest.fixture
def app(shop_settings):
    return build_app(shop_settings)


@pytest.fixture(scope="session")
def bot_home(shop_home, tmp_path_factory):
    """`shop_home` plus knowledge base "shop-faq" (real minilm embeddings) and the storefront bot "shop-bot"."""
    from modelshop.apps import faq, support

    home = tmp_path_factory.mktemp("web-bot") / "home"
    shutil.copytree(shop_home, home)
    settings = make_settings(home, torch_threads=1)
    faq.build_kb(write_faq(home.parent / "faq.jsonl"), "shop-faq", settings=settings)
    # the toy intent model knows only good/bad: no hand-off intents
    support.create_bot(BOT, "support", "shop-faq", handoff_intents=[], storefront=True, settings=settings)
    return home


@pytest.fixture
def bot_settings(bot_home, tmp_path) -> Settings:
    """Like `shop_settings`, over a copy of `bot_home`: the storefront has a chat bot."""
    home = tmp_path / "home"
    shutil.copytree(bot_home, home)
    return web_settings(home)
