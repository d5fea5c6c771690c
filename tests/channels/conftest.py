"""Channel fixtures: a migrated database on SQLite and on PostgreSQL, plans made through billing."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import SecretStr

from modelshop.billing.accounts import create_plan
from modelshop.billing.plans import parse_plan
from modelshop.db import Database

ACTOR = "test"


def make_plan(db: Database, code: str, base_fee: str | None = None, unit_price: str | None = None) -> None:
    spec = {"code": code, "currency": "USD"}
    if base_fee is not None:
        spec["base_fee"] = base_fee
    if unit_price is not None:
        spec["charges"] = [{"metric": "requests", "model": "unit", "unit_price": unit_price}]
    create_plan(db, parse_plan(spec), actor=ACTOR)


def month_start(offset: int, today: dt.datetime | None = None) -> dt.datetime:
    """The first instant of the month `offset` months from this one (UTC)."""
    today = today or dt.datetime.now(dt.UTC)
    index = today.year * 12 + today.month - 1 + offset
    return dt.datetime(index // 12, index % 12 + 1, 1, tzinfo=dt.UTC)


def period(offset: int) -> str:
    return month_start(offset).strftime("%Y-%m")


ADMIN_KEY = "adm_" + "Zq81x" * 8


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def app(settings):
    """The real server (`create_app` with the billing gate) with billing's and channels' routers mounted."""
    from modelshop.billing import BillingGate
    from modelshop.platform import build_app

    settings = settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY)})
    app = build_app(settings, gate=BillingGate(settings))
    return app
