"""The routers through a real FastAPI app with BillingGate: isolation between customers, admin only for admins."""

from __future__ import annotations

import asyncio
import hmac
import logging

import pytest
from fastapi.testclient import TestClient

from modelshop.billing import BillingGate
from modelshop.billing.api import admin_router, customer_router
from modelshop.gate import Units
from modelshop.serve.app import create_app
from tests.support import ADMIN_KEY, bearer, make_plans, serve_call


@pytest.fixture
def app(sqlite_db, admin_settings):
    """The server with billing's two routers alone (no other part's), on the billing gate."""
    gate = BillingGate(admin_settings, sqlite_db)
    return create_app(admin_settings, gate, db=sqlite_db, routers=[admin_router, customer_router])


@pytest.fixture
def world(app, plan_files):
    """Two customers with a key each, usage and a draft invoice each, made through the admin API."""
    gate = app.state.modelshop.gate
    make_plans(gate.db, plan_files, "grad")
    with TestClient(app) as client:
        admin = bearer(ADMIN_KEY)
        ids = [client.post("/admin/customers", json={"name": n, "plan": "grad"}, headers=admin).json()["id"]
               for n in ("Ann", "Ben")]
        keys = [client.post("/admin/keys", json={"customer_id": i, "rpm": 1000}, headers=admin).json()
                for i in ids]

    async def use():
        for k, n in zip(keys, (3, 5), strict=True):
            for _ in range(n):
                assert (await serve_call(gate, k["key"], units=Units(1, 4, 9)))[0] == "ok"
        await gate.close()

    asyncio.run(use())
    with TestClient(app) as client:
        run = client.post("/admin/invoices/run", json={"period": gate.clock().strftime("%Y-%m")},
                          headers=bearer(ADMIN_KEY)).json()
    invoices = {i["customer_id"]: i["id"] for i in run["invoices"]}
    return {"ids": ids, "keys": keys, "invoices": [invoices[i] for i in ids]}


def test_customers_see_only_their_own(app, world):
    (ann, ben), (ann_key, ben_key) = world["ids"], world["keys"]
    with TestClient(app) as client:
        me = bearer(ann_key["key"])
        assert client.get("/v1/account", headers=me).json()["id"] == ann
        usage = client.get("/v1/account/usage", headers=me).json()
        assert usage["customer_id"] == ann and usage["totals"]["requests"] == 3
        assert {r["customer_id"] for r in usage["by_model"]} == {ann}
        assert [i["customer_id"] for i in client.get("/v1/account/invoices", headers=me).json()] == [ann]
        assert client.get(f"/v1/account/invoices/{world['invoices'][0]}", headers=me).status_code == 200
        other = client.get(f"/v1/account/invoices/{world['invoices'][1]}", headers=me)
        assert other.status_code == 404 and other.json() == {"error": f"invoice {world['invoices'][1]} does not exist",
                                                             "error_type": "not_found"}
        listed = client.get("/v1/account/keys", headers=me).json()
        assert [k["id"] for k in listed] == [ann_key["id"]]
        assert not any(field in k for k in listed for field in ("key", "key_hash"))
        for verb in ("rotate", "revoke"):   # another customer's key is out of reach, and untouched
            r = client.post(f"/v1/account/keys/{ben_key['id']}/{verb}", headers=me)
            assert r.status_code == 404 and r.json()["error_type"] == "not_found"
        assert client.get("/v1/account", headers=bearer(ben_key["key"])).json()["id"] == ben
        # the query string cannot widen the scope: the customer id always comes from the key
        assert client.get(f"/v1/account/usage?customer_id={ben}", headers=me).json()["customer_id"] == ann


def test_customer_keys_cannot_reach_any_admin_route(app, world):
    customer = bearer(world["keys"][0]["key"])
    with TestClient(app) as client:
        tried = 0
        for route in admin_router.routes:
            path = route.path.replace("{customer_id}", "1").replace("{key_id}", "1").replace("{invoice_id}", "1")
            for method in route.methods:
                r = client.request(method, path, headers=customer, params={"period": "2026-01"}, json={})
                assert r.status_code == 403, (method, path, r.text)
                assert r.json() == {"error": "this route needs an admin key", "error_type": "forbidden"}
                tried += 1
        assert tried >= 20
        assert client.get("/admin/customers").status_code == 401
        assert client.get("/v1/account", headers=bearer(ADMIN_KEY)).status_code == 403


def test_rotate_own_key_and_db_admin_keys(app, world):
    ann_key = world["keys"][0]
    with TestClient(app) as client:
        new = client.post(f"/v1/account/keys/{ann_key['id']}/rotate", headers=bearer(ann_key["key"])).json()
        assert new["key"].startswith("ms_live_") and new["rpm"] == 1000 and new["id"] != ann_key["id"]
        old = client.get("/v1/account", headers=bearer(ann_key["key"]))
        assert old.status_code == 401 and "was revoked at" in old.json()["error"]
        assert client.get("/v1/account", headers=bearer(new["key"])).status_code == 200

        staff = client.post("/admin/admin-keys", json={"name": "ops on call"}, headers=bearer(ADMIN_KEY)).json()
        assert staff["key"].startswith("ms_admin_")
        assert client.get("/admin/customers", headers=bearer(staff["key"])).status_code == 200
        revoked = client.post(f"/admin/keys/{new['id']}/revoke", headers=bearer(staff["key"])).json()
        assert revoked["status"] == "revoked"
        audit = client.get("/admin/audit", headers=bearer(ADMIN_KEY)).json()
        assert audit[0]["actor"] == f"admin-key:{staff['id']}" and audit[0]["action"] == "key.revoke"
        assert any(e["actor"] == f"customer:{world['ids'][0]}/key:{ann_key['id']}" and e["action"] == "key.rotate"
                   for e in audit)
        assert client.get("/v1/account", headers=bearer(new["key"])).status_code == 401


def test_wrong_keys_compared_in_constant_time_and_never_logged(app, world, caplog, monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    caplog.set_level(logging.DEBUG)
    real_key = world["keys"][0]["key"]
    wrong = [real_key[:-1] + ("A" if real_key[-1] != "A" else "B"), "ms_live_" + "z" * 43, ADMIN_KEY + "0"]
    with TestClient(app) as client:
        for key in wrong:
            r = client.get("/v1/account/usage", headers=bearer(key))
            assert r.status_code == 401 and r.json() == {"error": "invalid API key", "error_type": "unauthorized"}
        assert client.get("/v1/account/usage", headers=bearer(real_key)).status_code == 200
        client.post(f"/v1/account/keys/{world['keys'][0]['id']}/revoke", headers=bearer(real_key))
        assert client.get("/v1/account/usage", headers=bearer(real_key)).status_code == 401
    # every wrong key went through hmac.compare_digest (against the admin key and a digest)
    assert len(compared) >= 2 * len(wrong)
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert "authentication failed" in logged
    for key in wrong + [real_key, ADMIN_KEY]:
        assert key not in logged and key[8:] not in logged
