"""Every channels and storefront setting is documented and reachable from the environment."""

from __future__ import annotations

import pytest

from modelshop.channels import analytics
from modelshop.errors import ValidationError
from modelshop.settings import Settings

CHANNELS = ("attribution_model", "attribution_window_days", "channels_currency", "channels_churn_floor",
            "commission_hold_days", "storefront_plans", "storefront_demo_rpm", "storefront_demo_global_rpm",
            "storefront_demo_max_chars", "storefront_signup_rpm", "storefront_address_rpm", "secret_key", "proxy_hops")


def test_settings_have_help_text_and_env_names(monkeypatch, tmp_path):
    for name in CHANNELS:
        field = Settings.model_fields[name]
        assert field.description and len(field.description) > 15, name
    monkeypatch.setenv("MODELSHOP_ATTRIBUTION_MODEL", "last")
    monkeypatch.setenv("MODELSHOP_STOREFRONT_PLANS", '["free", "payg"]')
    monkeypatch.setenv("MODELSHOP_CHANNELS_CHURN_FLOOR", "0.05")
    s = Settings(home=tmp_path)
    assert (s.attribution_model, s.storefront_plans, str(s.channels_churn_floor)) == ("last", ["free", "payg"], "0.05")
    monkeypatch.setenv("MODELSHOP_ATTRIBUTION_MODEL", "middle")
    with pytest.raises(ValueError, match="attribution_model"):
        Settings(home=tmp_path)


def test_a_bad_report_currency_is_one_clear_line(sqlite_db, tmp_path):
    with pytest.raises(ValidationError, match='MODELSHOP_CHANNELS_CURRENCY: "EURO" is not a supported'):
        analytics.report(sqlite_db, Settings(home=tmp_path, channels_currency="EURO"), "2026-05")
