"""The storefront under abuse: visitor ids the server signs, limits per visitor and per client
address (X-Forwarded-For only behind a configured proxy), one visit row per visitor and page,
and referral links to the site root."""

from __future__ import annotations

import re
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelshop.channels import analytics, channels
from modelshop.channels.tables import Touch, Visit
from modelshop.db import get_database, utcnow
from modelshop.web.signing import signer
from modelshop.web.visitors import VISITOR_COOKIE
from tests.web.helpers import build_app


def visitor_cookie(response) -> str:
    return re.search(rf"{VISITOR_COOKIE}=([^;]+)", response.headers["set-cookie"]).group(1)


def counts(settings) -> tuple[int, int]:
    with get_database(settings).session() as s:
        return s.scalar(select(func.count()).select_from(Visit)), s.scalar(select(func.count()).select_from(Touch))


def test_visitor_ids_are_signed_and_a_forged_one_is_replaced(app, shop_settings):
    with TestClient(app) as client:
        cookie = visitor_cookie(client.get("/store"))
        vid, _, mac = cookie.partition(".")
        assert re.fullmatch(r"[0-9a-f]{32}", vid) and signer(shop_settings).unsign("visitor", cookie) == vid
        assert len(mac) == 64
        assert "set-cookie" in client.get("/store").headers and counts(shop_settings)[0] == 1  # the same id kept
        assert visitor_cookie(client.get("/store")) == cookie
        forged = [uuid.uuid4().hex,                                  # an id of the old, unsigned kind
                  f"{uuid.uuid4().hex}.{mac}",                       # another id under a real signature
                  f"{vid}.{'0' * 64}"]                               # the real id, a made-up signature
        for value in forged:
            client.cookies.clear()
            client.cookies.set(VISITOR_COOKIE, value)
            fresh = visitor_cookie(client.get("/store/support"))
            assert fresh.partition(".")[0] not in {value.partition(".")[0], vid}, value
            assert signer(shop_settings).unsign("visitor", fresh)
    with get_database(shop_settings).session() as s:
        recorded = set(s.scalars(select(Visit.visitor_id)))
    assert not recorded & {v.partition(".")[0] for v in forged[:2]}


def test_a_forged_or_dropped_cookie_buys_no_fresh_budget(shop_settings):
    app = build_app(shop_settings.model_copy(update={"storefront_address_rpm": 5}))
    try_it = {"model": "support", "text": "great product"}
    with TestClient(app, client=("198.51.100.7", 4000)) as client:
        # no cookie: the address's shared visitor bucket (storefront_demo_rpm = 3)
        assert [client.post("/store/playground", json=try_it).status_code for _ in range(4)] == [200] * 3 + [429]
        for _ in range(3):  # made-up ids are no visitors: still the same bucket
            client.cookies.set(VISITOR_COOKIE, uuid.uuid4().hex)
            r = client.post("/store/playground", json=try_it)
            assert r.status_code == 429 and "3 tries a minute" in r.json()["error"]
    with TestClient(app, client=("198.51.100.8", 4000)) as client:
        # fresh signed ids, one per page load: each has a visitor budget, the address caps them all (5)
        codes = []
        for _ in range(4):
            client.cookies.clear()
            client.get("/store")
            codes += [client.post("/store/playground", json=try_it).status_code for _ in range(2)]
        assert codes == [200] * 5 + [429] * 3
        r = client.post("/store/playground", json=try_it)
        assert "5 tries a minute from one address" in r.json()["error"] and int(r.headers["retry-after"]) >= 1


def test_x_forwarded_for_counts_only_behind_a_configured_proxy(shop_settings):
    def tries(app, forwarded: list[str]) -> list[int]:
        with TestClient(app, client=("203.0.113.9", 5000)) as client:
            return [client.post("/store/playground", json={"model": "support", "text": "ok"},
                                headers={"X-Forwarded-For": f}).status_code for f in forwarded]

    spoofed = [f"10.0.0.{i}" for i in range(5)]
    assert tries(build_app(shop_settings), spoofed) == [200] * 3 + [429] * 2  # one address: the connection's
    behind = build_app(shop_settings.model_copy(update={"proxy_hops": 1}))
    assert tries(behind, spoofed) == [200] * 5                                 # the proxy's word: five clients
    # behind one proxy only the address it appended counts, not what the client wrote before it
    assert tries(behind, [f"10.9.9.{i}, 192.0.2.1" for i in range(5)]) == [200] * 3 + [429] * 2


def test_reloads_make_one_visit_row_and_one_touch(app, shop_settings):
    db = get_database(shop_settings)
    code = channels.create_channel(db, "Mail", "campaign", actor="test")["code"]
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get(f"/store/support?ref={code}&utm_source=mail").status_code == 200
        assert counts(shop_settings) == (1, 1)
        client.get("/store")
        client.get("/store")
        assert counts(shop_settings) == (2, 1)  # another page: another landing
        client.get(f"/store?ref={code}&utm_source=other")
        assert counts(shop_settings) == (2, 2)  # another link: another touch (the same landing)
    rows = {r["code"]: r for r in analytics.report(db, shop_settings, utcnow().strftime("%Y-%m"))}
    assert rows[code]["visits"] == 1


def test_a_client_that_never_keeps_the_cookie_adds_rows_only_within_its_address_budget(shop_settings):
    app = build_app(shop_settings.model_copy(update={"storefront_address_rpm": 4}))
    with TestClient(app, client=("198.51.100.20", 4000)) as client:
        for _ in range(10):
            client.cookies.clear()
            assert client.get("/store").status_code == 200  # the page is served all the same
    assert counts(shop_settings)[0] == 4


def test_a_referral_link_to_the_site_root_lands_on_the_storefront_and_counts_once(app, shop_settings):
    db = get_database(shop_settings)
    code = channels.create_channel(db, "Partner Blog", "affiliate", actor="test")["code"]
    with TestClient(app) as client:
        hop = client.get(f"/?ref={code}&utm_source=blog", follow_redirects=False)
        assert hop.status_code == 307 and hop.headers["location"] == f"/store?ref={code}&utm_source=blog"
        r = client.get(f"/?ref={code}&utm_source=blog")
        assert r.status_code == 200 and 'id="models"' in r.text
        assert client.get("/").status_code == 200
    assert counts(shop_settings) == (1, 1)
    rows = {r["code"]: r for r in analytics.report(db, shop_settings, utcnow().strftime("%Y-%m"))}
    assert rows[code]["visits"] == 1


def test_replicas_sharing_a_redis_share_the_address_budget(shop_settings, redis_url):
    shared = shop_settings.model_copy(update={"redis_url": redis_url, "storefront_address_rpm": 4,
                                              "rate_limit_prefix": f"t{uuid.uuid4().hex[:12]}"})
    one, two = build_app(shared), build_app(shared)
    codes = []
    with TestClient(one, client=("198.51.100.30", 1)) as a, TestClient(two, client=("198.51.100.30", 2)) as b:
        for client in (a, b, a, b, a, b):
            client.cookies.clear()
            client.get("/store")  # a fresh signed visitor each time: only the address's budget holds
            codes.append(client.post("/store/playground", json={"model": "support", "text": "ok"}).status_code)
    assert codes == [200] * 4 + [429] * 2
