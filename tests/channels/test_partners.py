"""Isolation through the real server: a partner key sees only its own customers, usage, invoices and
commissions; everything else answers 404 (another partner's) or 401 (a key of the wrong kind)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelshop.billing import accounts, invoices, keys, usage
from modelshop.channels import attribution, commissions, partners
from modelshop.db import get_database, utcnow
from tests.support import ACTOR, ADMIN_KEY, bearer, make_plan, month_start, period


def _meter(db, customer_id: int, n: int) -> None:
    key_id = keys.create_key(db, customer_id, actor=ACTOR)["id"]
    usage.write_batch(db, [usage.Metered(customer_id=customer_id, key_id=key_id, request_id=f"r{customer_id}-{i}",
                                         route="/predict", model="m:1", requests=1, tokens=10, characters=40,
                                         compute_us=1000, occurred_at=utcnow()) for i in range(n)])


@pytest.fixture
def world(app, settings):
    """Partners A (a reseller, 20 %) and B (affiliate, 10 %), each with customers; one direct customer."""
    db = get_database(settings)
    make_plan(db, "pro", base_fee="50.00")
    a = partners.create_partner(db, "Alpha Resell", reseller_discount="10", actor=ACTOR)
    b = partners.create_partner(db, "Beta Blog", kind="affiliate", actor=ACTOR)
    commissions.create_rule(db, a["id"], "percent", percent="20", hold_days=0, actor=ACTOR)
    commissions.create_rule(db, b["id"], "percent", percent="10", hold_days=0, actor=ACTOR)
    ids = {}
    for name, code in (("a1", a["channel"]["code"]), ("a2", a["channel"]["code"]), ("b1", b["channel"]["code"]),
                       ("d1", None)):
        ids[name] = accounts.create_customer(db, name, "pro", actor=ACTOR)["id"]
        attribution.bind_customer(db, settings, ids[name], params={"ref": code} if code else None)
    for name, n in (("a1", 3), ("b1", 5), ("d1", 7)):
        _meter(db, ids[name], n)
    inv = {}
    for name, cid in ids.items():
        inv[name] = invoices.run_invoices(db, period(0), customer_id=cid, actor=ACTOR)["invoices"][0]["id"]
        invoices.finalize(db, inv[name], actor=ACTOR, now=month_start(1))
        invoices.pay(db, inv[name], actor=ACTOR)
    commissions.run_commissions(db, actor=ACTOR)
    pays = {p["id"]: commissions.payout(db, p["id"], period(0), actor=ACTOR)["id"] for p in (a, b)}
    keyset = {p["id"]: partners.create_partner_key(db, p["id"], actor=ACTOR)["key"] for p in (a, b)}
    return {"a": a, "b": b, "ids": ids, "invoices": inv, "payouts": pays, "keys": keyset, "db": db}


def test_a_partner_sees_only_its_own(app, world):
    a, b, ids = world["a"], world["b"], world["ids"]
    with TestClient(app) as client:
        me = bearer(world["keys"][a["id"]])
        assert client.get("/v1/partner", headers=me).json()["id"] == a["id"]
        assert sorted(c["id"] for c in client.get("/v1/partner/customers", headers=me).json()) == [ids["a1"], ids["a2"]]
        assert client.get(f"/v1/partner/customers/{ids['a1']}", headers=me).status_code == 200
        for other in ("b1", "d1"):
            r = client.get(f"/v1/partner/customers/{ids[other]}", headers=me)
            assert r.status_code == 404 and r.json() == {"error": f"customer {ids[other]} does not exist",
                                                         "error_type": "not_found"}
        use = client.get("/v1/partner/usage", headers=me).json()
        assert use["totals"]["requests"] == 3 and [c["customer_id"] for c in use["customers"]] == [ids["a1"]]
        invs = client.get("/v1/partner/invoices", headers=me).json()
        assert sorted(i["id"] for i in invs) == sorted([world["invoices"]["a1"], world["invoices"]["a2"]])
        assert {i["amount"] for i in invs} == {"50.00"}  # 20 % of each: 10.00
        mine = client.get("/v1/partner/commissions", headers=me).json()
        assert {e["customer_id"] for e in mine["entries"]} == {ids["a1"], ids["a2"]}
        assert mine["totals"] == {"USD": {"pending": "0.00", "approved": "0.00", "paid": "20.00"}}
        assert [p["id"] for p in client.get("/v1/partner/payouts", headers=me).json()] == [world["payouts"][a["id"]]]
        theirs = world["payouts"][b["id"]]
        assert client.get(f"/v1/partner/payouts/{theirs}", headers=me).status_code == 404
        assert client.get(f"/v1/partner/payouts/{theirs}.csv", headers=me).status_code == 404
        csv_text = client.get(f"/v1/partner/payouts/{world['payouts'][a['id']]}.csv", headers=me).text
        assert csv_text.splitlines()[-1] == f"total,,,,{period(0)},,,,,20.00,USD"
        # and B sees B's only
        theirs_view = client.get("/v1/partner/customers", headers=bearer(world["keys"][b["id"]])).json()
        assert [c["id"] for c in theirs_view] == [ids["b1"]]


def test_keys_of_the_wrong_kind_are_refused(app, world):
    a = world["a"]
    customer_key = keys.create_key(world["db"], world["ids"]["a1"], actor=ACTOR)["key"]
    with TestClient(app) as client:
        assert client.get("/v1/partner/customers").status_code == 401
        r = client.get("/v1/partner/customers", headers=bearer(customer_key))
        assert r.status_code == 401 and "needs a partner key" in r.json()["error"]
        assert client.get("/v1/partner/customers", headers=bearer(ADMIN_KEY)).status_code == 401
        partner_key = world["keys"][a["id"]]
        assert client.get("/admin/channels", headers=bearer(partner_key)).status_code == 401
        assert client.get("/admin/customers", headers=bearer(partner_key)).status_code == 401
        assert client.post("/predict", json={"inputs": "hi"}, headers=bearer(partner_key)).status_code == 401
        key_id = partners.authenticate(world["db"], partner_key).principal.key_id
        assert client.post(f"/admin/partner-keys/{key_id}/revoke", headers=bearer(ADMIN_KEY)).status_code == 200
        r = client.get("/v1/partner/customers", headers=bearer(partner_key))
        assert r.status_code == 401 and "revoked" in r.json()["error"]


def test_resellers_create_customers_under_them(app, world):
    a, b = world["a"], world["b"]
    with TestClient(app) as client:
        r = client.post("/v1/partner/customers", json={"name": "New Co", "plan": "pro"},
                        headers=bearer(world["keys"][a["id"]]))
        assert r.status_code == 201, r.text
        made = r.json()
        assert made["customer"]["reseller_id"] == a["reseller_id"] and made["key"]["key"].startswith("ms_live_")
        # billing gives the reseller's customers its 10 % wholesale discount: 50.00 → 45.00
        invoices.run_invoices(world["db"], period(0), customer_id=made["customer"]["id"], actor=ACTOR)
        mine = client.get("/v1/partner/invoices", headers=bearer(world["keys"][a["id"]])).json()
        assert [i["amount"] for i in mine if i["customer_id"] == made["customer"]["id"]] == ["45.00"]
        binding = client.get(f"/admin/customers/{made['customer']['id']}/channel", headers=bearer(ADMIN_KEY)).json()
        assert binding["channel"] == a["channel"]["code"] and binding["model"] == "partner"
        r = client.post("/v1/partner/customers", json={"name": "X", "plan": "pro"},
                        headers=bearer(world["keys"][b["id"]]))
        assert r.status_code == 403 and "only a reseller" in r.json()["error"]
        r = client.post("/v1/partner/customers", json={"name": "Y", "plan": "prro"},
                        headers=bearer(world["keys"][a["id"]]))
        assert r.status_code == 404 and 'did you mean "pro"' in r.json()["error"]
