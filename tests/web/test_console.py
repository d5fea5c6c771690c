"""The console through the real app: login by form into an HttpOnly cookie, admin pages and actions
(with CSRF tokens), and a partner's login that reaches only its own scoped page."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from modelshop.billing import accounts, invoices
from modelshop.channels import attribution, commissions, partners
from modelshop.db import get_database, utcnow
from tests.support import ADMIN_KEY
from tests.web.helpers import csrf, login


def test_login_sets_an_httponly_cookie_and_never_a_url(app):
    with TestClient(app) as client:
        assert client.get("/console", follow_redirects=False).headers["location"].startswith("/console/login")
        bad = login(client, "not-a-key")
        assert bad.status_code == 401 and "invalid API key" in bad.text
        r = login(client, ADMIN_KEY)
        assert r.status_code == 303 and r.headers["location"] == "/console" and ADMIN_KEY not in r.headers["location"]
        cookie = r.headers["set-cookie"]
        assert "ms_console=" in cookie and "HttpOnly" in cookie and "Path=/console" in cookie \
            and "SameSite=lax" in cookie
        home = client.get("/console")
        assert home.status_code == 200 and "data:image/svg+xml;base64," in home.text and ADMIN_KEY not in home.text
        assert re.search(r"\b0 Keys\b", home.text) and "built-in method" not in home.text
        client.post("/console/logout", data={"csrf": csrf(home.text)})
        assert client.get("/console", follow_redirects=False).status_code == 303


def test_admin_pages_and_actions(app, shop_settings):
    db = get_database(shop_settings)
    with TestClient(app) as client:
        client.get("/store/support?ref=nobody")  # an unknown code: a visit, no touch
        login(client, ADMIN_KEY)
        page = client.get("/console/channels")
        assert page.status_code == 200
        token = csrf(page.text)
        refused = client.post("/console/channels", data={"name": "Spring", "kind": "campaign"})
        assert refused.status_code == 403 and "stale or not yours" in refused.text
        made = client.post("/console/channels", data={"name": "Spring", "kind": "campaign", "csrf": token})
        assert made.status_code == 200 and "?ref=spring" in made.text
        bad = client.post("/console/channels", data={"name": "X", "kind": "afiliate", "csrf": token})
        assert bad.status_code == 422 and 'did you mean "affiliate"' in html.unescape(bad.text)
        cost = client.post("/console/costs", data={"channel": "spring", "month": utcnow().strftime("%Y-%m"),
                                                   "amount": "250", "csrf": token})
        assert "spring" in cost.text and "250.00 USD" in cost.text
        store = client.get("/store/support?ref=spring")
        client.post("/store/signup", data={"email": "bo@x.io", "plan": "free", "model": "support",
                                           "csrf": csrf(store.text)})
        report = client.get("/console/channels").text
        row = re.search(r'data-code="spring">(.*?)</tr>', report, re.S).group(1)
        assert re.search(r'class="num visits">1<', row) and re.search(r'class="num signups">1<', row)
        detail = client.get("/console/channels/spring")
        assert detail.status_code == 200 and "bo@x.io" in detail.text and 'id="signups">1<' in detail.text
        customers = client.get("/console/customers").text
        bo = re.search(r'data-email="bo@x.io">(.*?)</tr>', customers, re.S).group(1)
        assert "/console/channels/spring" in bo and '<td class="num">1</td>' in bo  # its one active key
        for path in ("/console/models", "/console/invoices", "/console/partners", "/console/channels/report.csv"):
            assert client.get(path).status_code == 200, path
        assert "support:1" in client.get("/console/models").text
        created = client.post("/console/partners", data={"name": "Acme", "csrf": token})
        assert "created with channel ?ref=acme" in created.text
        pid = partners.list_partners(db)[0]["id"]
        shown = client.post(f"/console/partners/{pid}/keys", data={"csrf": token})
        assert re.search(r'id="shown-key">ms_partner_', shown.text) and shown.headers["cache-control"] == "no-store"
        rule = client.post(f"/console/partners/{pid}/rules", data={"kind": "percent", "percent": "10", "csrf": token})
        assert "rule 1 (percent)" in rule.text


def test_a_partner_sees_only_its_own_page(app, shop_settings):
    db = get_database(shop_settings)
    mine = partners.create_partner(db, "Mine", actor="test")
    other = partners.create_partner(db, "Other", actor="test")
    commissions.create_rule(db, mine["id"], "percent", percent="10", hold_days=0, actor="test")
    ids = {}
    for name, p in (("mine-customer", mine), ("other-customer", other)):
        ids[name] = accounts.create_customer(db, name, "payg", email=f"{name}@x.io", actor="test")["id"]
        attribution.bind_customer(db, shop_settings, ids[name], params={"ref": p["channel"]["code"]})
    run = invoices.run_invoices(db, utcnow().strftime("%Y-%m"), actor="test")
    assert {i["customer_id"] for i in run["invoices"]} <= set(ids.values())
    key = partners.create_partner_key(db, mine["id"], actor="test")["key"]
    with TestClient(app) as client:
        r = login(client, key)
        assert r.headers["location"] == "/console/partner"
        page = client.get("/console/partner").text
        assert "mine-customer" in page and "other-customer" not in page
        for path in ("/console", "/console/customers", "/console/channels", "/console/partners"):
            assert client.get(path, follow_redirects=False).headers["location"] == "/console/partner", path
        token = csrf(client.get("/console/partner").text)
        refused = client.post("/console/channels", data={"name": "x", "kind": "campaign", "csrf": token})
        assert refused.status_code == 403
