"""Console sessions: a random server-side id in the cookie (never the key), its cookie flags, logout,
expiry, the key behind it (revoked or changed: the session ends), and the CSRF tokens of its forms."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select

from modelshop.billing import keys
from modelshop.channels import partners
from modelshop.db import get_database, utcnow
from modelshop.errors import Unauthorized
from modelshop.web import sessions
from modelshop.web.tables import WebSession
from tests.support import ADMIN_KEY
from tests.web.helpers import build_app, csrf, login


def refused(client: TestClient, path: str = "/console") -> bool:
    r = client.get(path, follow_redirects=False)
    return r.status_code == 303 and r.headers["location"].startswith("/console/login")


def test_the_cookie_is_a_random_session_id_and_the_database_keeps_only_its_hash(app, shop_settings):
    db = get_database(shop_settings)
    with TestClient(app) as client:
        r = login(client, ADMIN_KEY)
        cookie = r.headers["set-cookie"]
        sid = client.cookies.get("ms_console")
        assert ADMIN_KEY not in cookie and len(sid) >= 40 and sid != ADMIN_KEY
        for flag in ("HttpOnly", "SameSite=lax", "Path=/console", f"Max-Age={12 * 3600}"):
            assert flag in cookie, flag
        assert "Secure" not in cookie  # local development: MODELSHOP_ENV=development on 127.0.0.1
        with db.session() as s:
            row = s.scalar(select(WebSession))
            stored = [getattr(row, c.name) for c in WebSession.__table__.columns]
        assert row.id_hash == hashlib.sha256(sid.encode()).hexdigest() and sid not in map(str, stored)
        assert row.expires_at - row.created_at == dt.timedelta(hours=12) and row.api_key_id is None
        again = login(client, ADMIN_KEY)  # each login is a new session
        assert client.cookies.get("ms_console") != sid and again.status_code == 303


def test_logout_ends_the_session_on_the_server_and_needs_its_token(app):
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        sid = client.cookies.get("ms_console")
        home = client.get("/console")
        stale = client.post("/console/logout", data={"csrf": "not-the-token"})
        assert stale.status_code == 403 and client.get("/console").status_code == 200
        out = client.post("/console/logout", data={"csrf": csrf(home.text)}, follow_redirects=False)
        assert out.headers["location"] == "/console/login" and 'ms_console=""' in out.headers["set-cookie"]
    with TestClient(app) as thief:  # the same cookie, kept by someone else: dead too
        thief.cookies.set("ms_console", sid, path="/console")
        assert refused(thief)


def test_revoking_the_key_ends_its_sessions(app, shop_settings):
    db = get_database(shop_settings)
    admin = keys.create_admin_key(db, name="ops", actor="test")
    partner = partners.create_partner(db, "Acme", actor="test")
    pkey = partners.create_partner_key(db, partner["id"], actor="test")
    with TestClient(app) as a, TestClient(app) as p:
        assert login(a, admin["key"]).headers["location"] == "/console"
        assert login(p, pkey["key"]).headers["location"] == "/console/partner"
        assert a.get("/console").status_code == 200 and p.get("/console/partner").status_code == 200
        keys.revoke_key(db, admin["id"], actor="test")
        partners.revoke_partner_key(db, pkey["id"], actor="test")
        assert refused(a) and refused(p, "/console/partner")
        assert login(a, admin["key"]).status_code == 401  # and it opens no new one


def test_a_changed_admin_key_ends_the_sessions_of_the_old_one(app, shop_settings):
    with TestClient(app) as client:
        login(client, ADMIN_KEY)
        sid = client.cookies.get("ms_console")
    rotated = build_app(shop_settings.model_copy(update={"admin_key": SecretStr(ADMIN_KEY + "-rotated")}))
    with TestClient(rotated) as client:
        client.cookies.set("ms_console", sid, path="/console")
        assert refused(client)


def test_a_session_expires(shop_settings, app):
    db = get_database(shop_settings)
    sid, session = sessions.open_session(db, sessions.Login("admin", ADMIN_KEY))
    assert sessions.lookup(db, shop_settings, sid).actor == "admin:env/console"
    with pytest.raises(Unauthorized, match="expired"):
        sessions.lookup(db, shop_settings, sid, now=session.expires_at + dt.timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="ended"):
        sessions.lookup(db, shop_settings, "x" * 43)


def test_each_session_has_its_own_csrf_token(app):
    with TestClient(app) as a, TestClient(app) as b:
        login(a, ADMIN_KEY)
        login(b, ADMIN_KEY)
        token_a, token_b = csrf(a.get("/console/channels").text), csrf(b.get("/console/channels").text)
        assert token_a != token_b
        crossed = b.post("/console/channels", data={"name": "Spring", "kind": "campaign", "csrf": token_a})
        assert crossed.status_code == 403 and "stale or not yours" in crossed.text
        fresh = b.post("/console/channels", data={"name": "Spring", "kind": "campaign", "csrf": token_b})
        assert fresh.status_code == 200


def test_the_login_form_has_a_token_of_its_own(app):
    with TestClient(app) as client:
        forged = client.post("/console/login", data={"key": ADMIN_KEY}, follow_redirects=False)
        assert forged.status_code == 403
        assert not [c for c in forged.headers.get_list("set-cookie") if c.startswith("ms_console=")]
        assert "was not sent from this page" in forged.text
        assert login(client, ADMIN_KEY).status_code == 303


@pytest.mark.parametrize(("update", "secure"), [
    ({"env": "production"}, True),
    ({"host": "0.0.0.0"}, True),
    ({"env": "production", "console_cookie_secure": False}, False),
    ({"console_cookie_secure": True}, True),
])
def test_the_session_cookie_is_secure_outside_local_development(shop_settings, update, secure):
    app = build_app(shop_settings.model_copy(update=update))
    with TestClient(app, base_url="https://testserver" if secure else "http://testserver") as client:
        r = login(client, ADMIN_KEY)
        assert r.status_code == 303
        session_cookie = [c for c in r.headers.get_list("set-cookie") if c.startswith("ms_console=")][0]
        assert ("Secure" in session_cookie) is secure
        assert client.get("/console").status_code == 200
    if secure:  # over plain HTTP the login form says why a Secure cookie cannot work there
        with TestClient(app) as client:
            r = client.post("/console/login", data={"key": ADMIN_KEY, "csrf": "x"})
            assert r.status_code == 403 and "log in over HTTPS" in r.text


def test_login_expires_nothing_but_old_sessions(shop_settings, app):
    """Opening a session drops the expired ones (nothing can read them again), and only those."""
    db = get_database(shop_settings)
    old, _ = sessions.open_session(db, sessions.Login("admin", ADMIN_KEY), now=utcnow() - dt.timedelta(hours=13))
    live, _ = sessions.open_session(db, sessions.Login("admin", ADMIN_KEY), now=utcnow() - dt.timedelta(hours=1))
    sessions.open_session(db, sessions.Login("admin", ADMIN_KEY))
    with db.session() as s:
        hashes = set(s.scalars(select(WebSession.id_hash)))
    assert sessions.digest(old) not in hashes and sessions.digest(live) in hashes
