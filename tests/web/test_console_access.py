"""Every console route, walked with a partner's session and with a customer's key, from the app's own
route table: a route added later is covered without anyone remembering to add it here.

A route is admin-only unless it is listed below as public (the login form) or as open to a partner
(with a check that it shows only that partner's rows). Admin-only routes must refuse a partner
session (a redirect to its own page, or 403) and change nothing in the database; a customer key
opens no console session at all.
"""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from modelshop.db import Base, all_tables
from tests.support import ADMIN_KEY, period
from tests.web.helpers import csrf, login, make_world

PUBLIC = {("GET", "/console/login"), ("POST", "/console/login")}
# the partner's own routes, each with the check of its scope below (`test_partner_routes_show_only_its_own`)
PARTNER = {("GET", "/console/partner"), ("GET", "/console/payouts/{payout_id}.csv"), ("POST", "/console/logout")}
NOT_STATE = {"web_sessions"}  # what a refused request may still touch: its own session row is read only anyway


@pytest.fixture
def world(app, shop_settings):
    return make_world(shop_settings)


def console_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every console route the app serves."""
    try:  # FastAPI ≥ 0.165 keeps included routers nested; this walks them as the OpenAPI generator does
        from fastapi.routing import iter_route_contexts
        routes = list(iter_route_contexts(app.routes))
    except ImportError:  # older FastAPI flattens them into app.routes
        routes = app.routes
    out = set()
    for route in routes:
        path = getattr(route, "path", "")
        if path == "/console" or path.startswith("/console/"):
            out |= {(m, path) for m in getattr(route, "methods", ()) if m != "HEAD"}
    return sorted(out)


def urls(path: str, w: dict) -> list[str]:
    """`path` with its parameters filled with the other partner's rows (and for partner_id, each partner)."""
    values = {"code": [w["other"]["channel"]["code"]], "customer_id": [w["ids"]["other-customer"]],
              "partner_id": [w["mine"]["id"], w["other"]["id"]], "payout_id": [w["payouts"][w["other"]["id"]]],
              "item_id": [1], "name": ["shop"], "ticket_id": [1]}
    filled = [path]
    for param in re.findall(r"\{(\w+)", path):
        assert param in values, f"console route {path} has a parameter {{{param}}}: give it a value in urls()"
        filled = [u.replace(f"{{{param}}}", str(v)) for u in filled for v in values[param]]
    return filled


def state(db) -> dict[str, int]:
    """Rows per table: what a refused request must leave as it was."""
    all_tables()
    with db.session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t))
                for t in Base.metadata.sorted_tables if t.name not in NOT_STATE}


def form_for(w: dict, token: str) -> dict:
    """Fields that would make any console form do something, were it accepted."""
    return {"csrf": token, "name": "Sneaky", "kind": "campaign", "code": "sneaky",
            "channel": w["mine"]["channel"]["code"], "month": period(0), "amount": "1",
            "csv": "channel,month,amount\nsneaky,2026-01,1\n", "label": "good",
            "text": "hello", "percent": "50", "reason": "mine now", "email": "x@x.io"}


def test_every_admin_route_refuses_a_partner_session(app, world):
    routes = console_routes(app)
    assert ("GET", "/console/channels/report.csv") in routes and len(routes) > 20
    with TestClient(app) as client:
        assert login(client, world["key"]).headers["location"] == "/console/partner"
        token = csrf(client.get("/console/partner").text)
        before = state(world["db"])
        for method, path in routes:
            if (method, path) in PUBLIC | PARTNER:
                continue
            for url in urls(path, world):
                if method == "GET":
                    r = client.get(url, follow_redirects=False)
                    assert r.status_code == 303 and r.headers["location"] == "/console/partner", (url, r.status_code)
                else:
                    r = client.request(method, url, data=form_for(world, token), follow_redirects=False)
                    assert r.status_code == 403 and "stale or not yours" in r.text, (method, url, r.status_code)
                assert "other-customer" not in r.text, url
        assert state(world["db"]) == before
        assert client.get("/console/partner").status_code == 200  # the session itself was fine all along


def test_a_customer_key_opens_no_console_session(app, world):
    key = world["customer_key"]
    with TestClient(app) as client:
        r = login(client, key)
        assert r.status_code == 403 and "a customer key is for the API" in r.text and "ms_console=" not in \
            r.headers.get("set-cookie", "")
        before = state(world["db"])
        # the old console kept the key itself in the cookie: that, a bearer header, or both, are no session
        client.cookies.set("ms_console", key, path="/console")
        for method, path in console_routes(app):
            if (method, path) in PUBLIC:
                continue
            for url in urls(path, world):
                r = client.request(method, url, data={"csrf": "x"}, follow_redirects=False,
                                   headers={"Authorization": f"Bearer {key}"})
                assert r.status_code == 303 and r.headers["location"].startswith("/console/login"), (method, url)
        assert state(world["db"]) == before


def test_partner_routes_show_only_its_own(app, world):
    mine, other = world["mine"], world["other"]
    with TestClient(app) as client:
        login(client, world["key"])
        page = client.get("/console/partner")
        assert page.status_code == 200 and "mine-customer" in page.text and "other-customer" not in page.text
        own = client.get(f"/console/payouts/{world['payouts'][mine['id']]}.csv")
        assert own.status_code == 200 and "mine-customer" in own.text and own.headers["content-type"].startswith(
            "text/csv")
        theirs = client.get(f"/console/payouts/{world['payouts'][other['id']]}.csv")
        assert theirs.status_code == 404 and "other-customer" not in theirs.text
        out = client.post("/console/logout", data={"csrf": csrf(page.text)}, follow_redirects=False)
        assert out.headers["location"] == "/console/login"
        assert client.get("/console/partner", follow_redirects=False).headers["location"].startswith("/console/login")
    # every partner route is one of those checked here
    assert {r for r in console_routes(app) if r in PARTNER} == PARTNER


def test_the_admin_reaches_every_page_the_walk_fills_in(app, world):
    """The values `urls` puts in the paths are real: an admin gets each GET page (so a refusal above is one)."""
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        for method, path in console_routes(app):
            if method == "GET" and path not in ("/console/login", "/console/partner"):
                for url in urls(path, world):
                    r = client.get(url, follow_redirects=False)
                    assert r.status_code == 200, (url, r.status_code)
        assert client.get("/console/partner", follow_redirects=False).headers["location"] == "/console"
        report = client.get("/console/channels/report.csv")
        assert report.headers["content-type"].startswith("text/csv") and "Other" in report.text
