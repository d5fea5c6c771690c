"""The billing gate is the default: keys made with `customers create` / `keys create` get in to a plain
server (and the admin key still does); admin-only serving is the opt-out, MODELSHOP_SERVE_GATE=admin."""

from __future__ import annotations

from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelshop.billing import BillingGate
from modelshop.gate import AdminKeyGate
from modelshop.platform import build_app, make_gate
from modelshop.settings import Settings
from tests.support import ADMIN_KEY, AUTH, customer_key


def test_a_plain_server_takes_customer_keys_and_the_admin_key(fresh_settings, monkeypatch):
    monkeypatch.delenv("MODELSHOP_SERVE_GATE", raising=False)
    plain = Settings(home=fresh_settings.home, progress=False, admin_key=SecretStr(ADMIN_KEY))  # no serve_gate given
    assert plain.serve_gate == "billing" and isinstance(make_gate(plain), BillingGate)
    customer = customer_key(plain)
    with TestClient(build_app(plain)) as c:
        r = c.post("/predict", json={"inputs": "terrible, broken"}, headers=customer)
        assert r.status_code == 200, r.text
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).status_code == 200
        assert c.post("/predict", json={"inputs": "great"}).status_code == 401


def test_admin_only_is_the_opt_out(fresh_settings, monkeypatch):
    monkeypatch.setenv("MODELSHOP_SERVE_GATE", "admin")
    admin_only = Settings(home=fresh_settings.home, progress=False, admin_key=SecretStr(ADMIN_KEY))
    assert isinstance(make_gate(admin_only), AdminKeyGate)
    customer = customer_key(admin_only)
    with TestClient(build_app(admin_only)) as c:
        assert c.post("/predict", json={"inputs": "great"}, headers=customer).status_code == 401
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).status_code == 200
