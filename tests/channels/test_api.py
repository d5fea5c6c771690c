"""The admin JSON routes of channels through the real server: channels, links, costs (JSON and CSV),
the report (JSON and CSV), rebinding with its audit entry, rules and payouts; admin only."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelshop.billing import accounts
from modelshop.channels import attribution
from modelshop.db import get_database, utcnow
from tests.support import ACTOR, AUTH, bearer, make_plan


def test_admin_routes(app, settings):
    db = get_database(settings)
    make_plan(db, "pro", base_fee="10.00")
    month = utcnow().strftime("%Y-%m")
    with TestClient(app) as client:
        made = client.post("/admin/channels", json={"name": "Autumn Ads", "kind": "campaign"}, headers=AUTH)
        assert made.status_code == 201 and made.json()["code"] == "autumn-ads"
        r = client.post("/admin/channels", json={"name": "X", "kind": "tv"}, headers=AUTH)
        assert r.status_code == 422 and r.json()["error_type"] == "validation"
        link = client.post("/admin/channels/autumn-ads/links", json={"utm_source": "google", "utm_medium": "cpc"},
                           headers=AUTH).json()
        assert link["url"] == "/store?ref=autumn-ads&utm_source=google&utm_medium=cpc"
        assert client.post("/admin/channels/costs", json={"channel": "autumn-ads", "month": month, "amount": "99.90"},
                           headers=AUTH).json()["amount"] == "99.90"
        csv_body = f"channel,month,kind,amount\nautumn-ads,{month},other,0.10\n"
        imported = client.post("/admin/channels/costs/import", content=csv_body,
                               headers={**AUTH, "Content-Type": "text/csv"})
        assert imported.status_code == 200, imported.text
        cid = accounts.create_customer(db, "Zed", "pro", actor=ACTOR)["id"]
        attribution.bind_customer(db, settings, cid, params={"utm_source": "google", "utm_medium": "cpc"})
        rows = {r["code"]: r for r in client.get(f"/admin/channels/report?period={month}", headers=AUTH).json()}
        assert rows["autumn-ads"]["signups"] == 1 and rows["autumn-ads"]["marketing_cost"] == "100.00"
        csv_text = client.get(f"/admin/channels/report?period={month}&format=csv", headers=AUTH)
        assert csv_text.headers["content-type"].startswith("text/csv") and "autumn-ads" in csv_text.text
        assert client.get("/admin/channels/cohorts?channel=autumn-ads", headers=AUTH).json()["cohorts"][-1][
            "customers"] == 1
        moved = client.post(f"/admin/customers/{cid}/channel", json={"channel": "direct", "reason": "test account"},
                            headers=AUTH).json()
        assert moved["channel"] == "direct"
        audit = client.get(f"/admin/audit?entity=customer&entity_id={cid}", headers=AUTH).json()
        assert audit[0]["action"] == "attribution.rebind" and audit[0]["detail"]["reason"] == "test account"
        p = client.post("/admin/partners", json={"name": "Resell Co", "reseller_discount": "15"}, headers=AUTH).json()
        assert p["discount_percent"] == "15.00" and p["channel"]["kind"] == "reseller"
        rule = client.post(f"/admin/partners/{p['id']}/rules", json={"kind": "bounty", "bounty": "30"}, headers=AUTH)
        assert rule.status_code == 201 and rule.json()["hold_days"] == settings.commission_hold_days
        assert client.post("/admin/commissions/run", headers=AUTH).json()["accrual"] == 0
        r = client.post(f"/admin/partners/{p['id']}/payouts", json={"month": month}, headers=AUTH)
        assert r.status_code == 422 and "nothing to pay" in r.json()["error"]
        customer_key = client.post("/admin/keys", json={"customer_id": cid}, headers=AUTH).json()["key"]
        assert client.get("/admin/channels", headers=bearer(customer_key)).status_code == 403
        assert client.get("/admin/channels").status_code == 401
