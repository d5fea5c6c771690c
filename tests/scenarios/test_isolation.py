"""Isolation in the whole server (`create_app` with every part's routers mounted), not just billing's.

tests/billing/test_api.py checks the billing routers on their own; here the app is the one
`modelshop serve` builds, so routes added by other parts (channels, partners, apps) are covered too:
  - every /admin route of the OpenAPI document answers 403 to a customer key and 401 to no key;
  - the operator routes of the apps (datasets, labelling queue, support tickets) answer 403;
  - partner routes refuse a customer key;
  - a customer reads only its own account, usage, invoices and keys, whatever the path or query says.
"""

from __future__ import annotations

import asyncio
import re

from fastapi.testclient import TestClient

from modelshop.billing import BillingGate
from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.invoices import run_invoices
from modelshop.billing.keys import create_key
from modelshop.billing.plans import parse_plan
from modelshop.gate import Units
from modelshop.platform import build_app
from tests.support import ACTOR, AUTH, serve_call

OPERATOR_ROUTES = [("GET", "/apps/datasets", None), ("POST", "/apps/datasets/x/export", {}),
                   ("GET", "/apps/labels", None), ("POST", "/apps/labels/1", {"label": "good"}),
                   ("GET", "/apps/support/tickets", None), ("POST", "/apps/support/tickets/1/reply", {"text": "hi"})]


def _world(sqlite_db, admin_settings):
    settings = admin_settings.model_copy(update={"serve_gate": "billing"})
    gate = BillingGate(settings, sqlite_db)
    create_plan(sqlite_db, parse_plan({"code": "payg", "currency": "USD", "charges": [
        {"metric": "requests", "model": "unit", "unit_price": "0.01"}]}), actor=ACTOR)
    people = [create_customer(sqlite_db, name, "payg", actor=ACTOR) for name in ("Ann", "Ben")]
    keys = [create_key(sqlite_db, c["id"], actor=ACTOR) for c in people]
    return settings, gate, people, keys


def test_customer_key_reaches_nothing_of_the_operator_or_of_others(sqlite_db, admin_settings):
    settings, gate, (ann, ben), (ann_key, ben_key) = _world(sqlite_db, admin_settings)

    async def use():
        for key, n in ((ann_key, 2), (ben_key, 3)):
            for _ in range(n):
                assert (await serve_call(gate, key["key"], units=Units(1, 4, 9)))[0] == "ok"
        await gate.close()

    asyncio.run(use())
    run = run_invoices(sqlite_db, gate.clock().strftime("%Y-%m"), actor=ACTOR)
    invoice_of = {i["customer_id"]: i["id"] for i in run["invoices"]}
    app = build_app(settings, gate=gate)
    me = {"Authorization": f"Bearer {ann_key['key']}"}
    with TestClient(app) as client:
        tried = 0
        for path, methods in sorted(app.openapi()["paths"].items()):
            if not path.startswith("/admin"):
                continue
            url = re.sub(r"\{[^}]+\}", "1", path)
            for method in methods:
                r = client.request(method.upper(), url, headers=me, params={"period": "2026-01"}, json={})
                assert r.status_code == 403, (method, path, r.text)
                assert r.json()["error_type"] == "forbidden"
                assert client.request(method.upper(), url, json={}).status_code == 401, (method, path)
                tried += 1
        assert tried >= 30          # billing, channels and partners all mount /admin routes

        for method, url, body in OPERATOR_ROUTES:
            r = client.request(method, url, headers=me, json=body)
            assert r.status_code == 403, (method, url, r.text)

        for path in app.openapi()["paths"]:
            if path.startswith("/v1/partner") and "{" not in path:
                assert client.get(path, headers=me).status_code in (401, 403), path

        # its own, and only its own, whatever the path or the query string names
        assert client.get("/v1/account", headers=me).json()["id"] == ann["id"]
        usage = client.get(f"/v1/account/usage?customer_id={ben['id']}", headers=me).json()
        assert usage["customer_id"] == ann["id"] and usage["totals"]["requests"] == 2
        assert [i["customer_id"] for i in client.get("/v1/account/invoices", headers=me).json()] == [ann["id"]]
        assert client.get(f"/v1/account/invoices/{invoice_of[ben['id']]}", headers=me).status_code == 404
        assert [k["id"] for k in client.get("/v1/account/keys", headers=me).json()] == [ann_key["id"]]
        assert client.post(f"/v1/account/keys/{ben_key['id']}/revoke", headers=me).status_code == 404
        assert client.get("/v1/account", headers={"Authorization": f"Bearer {ben_key['key']}"}).status_code == 200
        # the admin key is not a customer: no account of its own to read through the customer routes
        assert client.get("/v1/account", headers=AUTH).status_code == 403
