"""The storefront through the real app (in-process client): the model page fed by every stage,
visits and touches, the playground under its own limit, signup with referral, the language switch."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from modelshop.channels import analytics, attribution, channels
from modelshop.db import get_database, utcnow
from tests.support import bearer


def test_model_page_shows_every_stage_and_records_the_touch(app, shop_settings):
    db = get_database(shop_settings)
    code = channels.create_channel(db, "Spring Mail", "campaign", actor="test")["code"]
    with TestClient(app) as client:
        r = client.get(f"/store/support?ref={code}&utm_source=newsletter")
        assert r.status_code == 200
        html = r.text
        for part in ('id="figures"', "macro_f1", 'id="profile"', 'id="latency"', 'id="playground"', 'id="pricing"',
                     "Pay as you go", "0.002 per request", 'id="signup-form"'):
            assert part in html, part
        assert f'name="ref" value="{code}"' in html and 'name="utm_source" value="newsletter"' in html
        assert "confusion_matrix.png" in html
        cookie = r.headers["set-cookie"]
        assert "ms_visitor=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert client.get("/store/support/files/confusion_matrix.png").headers["content-type"] == "image/png"
        card = client.get("/store/support/card.md").text
        assert card.startswith("# Model card: support")
        # the training wrote the data file's absolute path into the card; the public sees only its name
        assert "pytest-of-" not in card and "pytest-of-" not in html and ".jsonl" in card
        assert client.get("/store/support/files/modelshop.json").status_code == 404
        assert client.get("/store/nosuch").status_code == 404
        client.get("/store")  # a second page view of the same visitor, no channel
    rows = {r["code"]: r for r in analytics.report(db, shop_settings, utcnow().strftime("%Y-%m"))}
    assert rows[code]["visits"] == 1


def test_playground_calls_the_model_under_its_own_limit(app, shop_settings):
    with TestClient(app) as client:
        r = client.post("/store/playground", json={"model": "support", "text": "great product, works well"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "support:1" and {x["label"] for x in body["labels"]} == {"good", "bad"}
        assert body["labels"][0]["label"] == "good"
        assert client.post("/store/playground", json={"model": "support", "text": "x" * 501}).status_code == 422
        codes = [client.post("/store/playground", json={"model": "support", "text": "ok"}).status_code
                 for _ in range(3)]
        assert codes[:2] == [200, 200] and codes[2] == 429  # storefront_demo_rpm = 3 per visitor
        r = client.post("/store/playground", json={"model": "support", "text": "ok"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "sign up for your own key" in r.json()["error"]
    # the demo principal is never metered: nothing reached the usage ledger
    with get_database(shop_settings).engine.connect() as c:
        assert c.exec_driver_sql("select count(*) from billing_usage_events").scalar() == 0


def signup_token(html: str) -> str:
    """The signup form's token from a model page."""
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def test_signup_binds_the_channel_and_shows_the_key_once(app, shop_settings):
    db = get_database(shop_settings)
    code = channels.create_channel(db, "Blog", "affiliate", actor="test")["code"]
    with TestClient(app) as client:
        token = signup_token(client.get(f"/store/support?ref={code}").text)

        def post(**fields):
            return client.post("/store/signup", data={"plan": "payg", "model": "support", "csrf": token, **fields})

        r = post(email="ann@example.com")
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
        key = re.search(r'id="api-key">(ms_live_[^<]+)<', r.text).group(1)
        assert "only time the key is shown" in r.text
        p = client.post("/predict?model=support", json={"inputs": "love it"}, headers=bearer(key))
        assert p.status_code == 200 and p.headers["x-request-id"]
        # refused signups come back as the model page, the error beside the form and the values kept
        again = post(email="ANN@example.com")
        assert again.status_code == 409 and again.headers["cache-control"] == "no-store"
        error = re.search(r'id="signup-error" role="alert">([^<]+)<', again.text).group(1)
        assert error.startswith("this e-mail address already has an account")
        assert 'id="signup-form"' in again.text and 'value="ANN@example.com"' in again.text
        assert 'value="payg" selected' in again.text and signup_token(again.text) == token
        bad = post(email="x@y.io", plan="gold")
        assert bad.status_code == 422 and 'id="signup-error"' in bad.text
        assert "plan: choose one of free, payg" in bad.text
        busy = post(email="z@y.io")
        assert busy.status_code == 429 and "at most 3 signups a minute" in busy.text  # storefront_signup_rpm
        assert int(busy.headers["retry-after"]) >= 1
    customer_id = next(c["id"] for c in __import__("modelshop.billing.accounts", fromlist=["x"]).list_customers(db)
                       if c["email"].lower() == "ann@example.com")
    assert attribution.get_attribution(db, customer_id)["channel"] == code


def test_signup_without_the_pages_token_is_refused(app, shop_settings):
    from modelshop.billing.accounts import list_customers

    with TestClient(app) as client:
        fields = {"email": "eve@example.com", "plan": "payg", "model": "support"}
        assert client.post("/store/signup", data=fields).status_code == 403  # no cookie, no token
        token = signup_token(client.get("/store/support").text)
        for forged in ("", "0" * 64, token[:-1] + ("0" if token[-1] != "0" else "1")):
            r = client.post("/store/signup", data={**fields, "csrf": forged})
            assert r.status_code == 403 and "reload the page and submit it again" in r.text, forged
        # a cross-site form carries no cookie of ours (SameSite=Lax): a token alone is not enough
        other = TestClient(app)
        r = other.post("/store/signup", data={**fields, "csrf": token})
        assert r.status_code == 403
        # another visitor's token does not fit this visitor's cookie
        other_token = signup_token(other.get("/store/support").text)
        assert client.post("/store/signup", data={**fields, "csrf": other_token}).status_code == 403
        assert list_customers(get_database(shop_settings)) == []
        assert client.post("/store/signup", data={**fields, "csrf": token}).status_code == 200


def test_language_switch(app):
    with TestClient(app) as client:
        assert "Pricing" in client.get("/store/support").text
        r = client.get("/store/support?lang=zh")
        assert "价格" in r.text and 'lang="zh-CN"' in r.text and "ms_lang=zh" in r.headers["set-cookie"]
        assert "模型" in client.get("/store").text  # the cookie remembers
        assert "Pricing" in client.get("/store?lang=en").text


def test_storefront_offers_only_the_configured_plans(shop_settings):
    from tests.web.helpers import build_app

    app = build_app(shop_settings.model_copy(update={"storefront_plans": ["free"]}))
    with TestClient(app) as client:
        html = client.get("/store/support").text
        assert 'data-plan="free"' in html and 'data-plan="payg"' not in html


def test_create_app_mounts_the_routers_once(shop_settings):
    """`create_app` mounts every part's routers, each once."""
    from tests.web.helpers import build_app

    app = build_app(shop_settings)
    paths = app.openapi()["paths"]  # warnings are errors: a router mounted twice fails here
    assert "/v1/partner/customers" in paths and "/admin/channels/report" in paths and "/store/{name}" not in paths
    with TestClient(app) as client:
        assert client.get("/store/support").status_code == 200
        assert client.get("/console/login").status_code == 200
