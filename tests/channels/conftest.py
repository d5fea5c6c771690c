"""Channel fixtures: the real server with billing's and channels' routers (the databases, plans and
periods come from tests/conftest.py and tests/support.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def app(admin_settings):
    """The real server (`create_app` with the billing gate) with billing's and channels' routers mounted."""
    from modelshop.billing import BillingGate
    from modelshop.platform import build_app

    return build_app(admin_settings, gate=BillingGate(admin_settings))
