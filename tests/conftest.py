"""Fixtures for every package: a temp modelshop home, a tiny real BERT, toy data, migrated databases
(SQLite, PostgreSQL), Redis, plan files. The helpers they call live in tests/support.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelshop.settings import Settings, get_settings
from tests.support import ADMIN_KEY, redis_url_or_skip, write_plans


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    """Settings on a fresh home (SQLite inside it); also what `get_settings()` returns in the test."""
    home = tmp_path / "home"
    monkeypatch.setenv("MODELSHOP_HOME", str(home))
    monkeypatch.setenv("MODELSHOP_PROGRESS", "false")
    for var in ("MODELSHOP_DATABASE_URL", "MODELSHOP_REDIS_URL", "MODELSHOP_ADMIN_KEY"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def admin_settings(settings) -> Settings:
    """`settings` with the test admin key (tests.support.ADMIN_KEY), for tests that call admin routes."""
    return settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the real minilm tokenizer, saved to a folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from modelshop.train.base_models import minilm_path

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def toy_data(tmp_path) -> tuple[Path, Path]:
    """A small separable two-class problem (train, eval) as JSONL."""
    pos = ["great product, works well", "love it, fast delivery", "excellent service thank you",
           "very happy with the quality", "superb, would buy again", "fantastic support team",
           "works perfectly and arrived early", "brilliant value for money", "really good experience",
           "amazing, five stars"]
    neg = ["broken on arrival, terrible", "awful service, never again", "refund me now, it is useless",
           "very bad quality, disappointed", "late delivery and rude staff", "the worst purchase ever",
           "stopped working after a day", "horrible experience, avoid", "poor value, cheap plastic",
           "terrible, one star"]
    rows = [{"text": t, "label": "good"} for t in pos] + [{"text": t, "label": "bad"} for t in neg]
    train = tmp_path / "train.jsonl"
    evaluation = tmp_path / "eval.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows * 3) + "\n")
    evaluation.write_text("\n".join(json.dumps(r) for r in rows[::2]) + "\n")
    return train, evaluation


def pytest_configure(config):
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url():
    """A fresh PostgreSQL schema on 127.0.0.1:5432/test for this test, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    try:
        admin = sa.create_engine(PG_BASE)
        with admin.connect() as c:
            c.execute(sa.text("select 1"))
    except Exception as e:  # any connection failure means: no server here
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432/test ({type(e).__name__})")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as c:
        c.execute(sa.text(f'create schema "{schema}"'))
    yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(sa.text(f'drop schema "{schema}" cascade'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A migrated database, once on SQLite and once on PostgreSQL (skipped when absent)."""
    from modelshop.db import Database

    url = f"sqlite:///{tmp_path / 'shop.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    database = Database(url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(tmp_path):
    """A migrated SQLite database in a temp folder."""
    from modelshop.db import Database

    database = Database(f"sqlite:///{tmp_path / 'shop.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def redis_url() -> str:
    """The Redis on 127.0.0.1:6379 (tests that use it pick a key prefix of their own), or skip."""
    return redis_url_or_skip()


@pytest.fixture
def plan_files(tmp_path) -> dict[str, Path]:
    """Each plan of tests.support.PLANS as a YAML file, by code (create them with `make_plans`)."""
    return write_plans(tmp_path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A random 2-layer, 64-wide Llama with a tiny byte-level BPE tokenizer and a chat template (a HF folder)."""
    from tests.support import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))
