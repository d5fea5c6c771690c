"""Apps fixtures: one home (session-wide) with a small shop FAQ built with the real minilm embedder and a
tfidf intent model trained in seconds on the bundled support messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelshop.settings import Settings

KEY = "apps-admin-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {KEY}"}
SHOP_FAQ = [
    ("returns", "How do I return an item?", "You can return any unused item within 30 days. Print the prepaid "
     "label from your order page and drop the parcel at any post office."),
    ("shipping-time", "How long does shipping take?", "Standard shipping takes 3-5 working days within the "
     "country. Express shipping arrives the next working day if you order before 2 pm."),
    ("password", "How do I reset my password?", "Click 'Forgot password' on the login page and follow the link "
     "we e-mail you. The link is valid for one hour."),
    ("hours", "When is your customer service open?", "Our team answers chats and calls Monday to Friday from "
     "9:00 to 18:00."),
    ("gift-cards", "Do you sell gift cards?", "Yes. Digital gift cards from 10 to 200 euros are sent by e-mail "
     "and never expire."),
    ("abroad", "Do you ship abroad?", "We ship to all EU countries and to Norway and Switzerland. Customs fees "
     "outside the EU are paid by the buyer."),
    ("sizes", "How do I find my size?", "Each product page has a size chart in centimetres. If you are between "
     "two sizes, pick the larger one."),
    ("payment", "Which payment methods do you accept?", "We accept Visa, Mastercard, PayPal and bank transfer. "
     "Invoices are available for business customers."),
]


def write_faq(path: Path, rows=SHOP_FAQ, keys=("id", "q", "a")) -> Path:
    path.write_text("".join(json.dumps(dict(zip(keys, r))) + "\n" for r in rows))
    return path


def home_settings(home: Path, **overrides) -> Settings:
    """One model worker, on a thread: the apps' servers start no worker processes unless a test asks."""
    return Settings(**{"home": home, "progress": False, "admin_key": SecretStr(KEY), "reload_interval_s": 0.0,
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
