"""Shared by the web tests: the app with every router over the web's plans, the storefront bot's name,
the console's login as a browser does it, and a world of partners with paid commissions."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from modelshop.billing import BillingGate, accounts, invoices, keys
from modelshop.billing.plans import parse_plan
from modelshop.channels import attribution, commissions, partners
from modelshop.db import get_database
from modelshop.settings import Settings
from tests.support import ACTOR, make_plan, month_start, period

BOT = "shop-bot"
PLANS = ({"code": "payg", "name": "Pay as you go", "currency": "USD",
          "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.002"}]},
         {"code": "free", "name": "Free", "currency": "USD", "quota": {"metric": "requests", "limit": 100}})


def build_app(settings: Settings):
    """`create_app` with the billing gate and every router (billing's, channels' and the web's), with PLANS."""
    from modelshop.platform import build_app

    db = get_database(settings)
    for spec in PLANS:
        accounts.create_plan(db, parse_plan(spec), actor=ACTOR)
    return build_app(settings, gate=BillingGate(settings, db))


def csrf(html: str) -> str:
    """The CSRF token of the form in `html`."""
    return re.search(r'name="csrf" value="([\w-]+)"', html).group(1)


def login(client: TestClient, key: str):
    """Log in as a browser does: the form (and its token cookie) first, then the key."""
    token = csrf(client.get("/console/login").text)
    return client.post("/console/login", data={"key": key, "csrf": token}, follow_redirects=False)


def make_world(shop_settings, mine_customer: str = "mine-customer") -> dict:
    """Partners "Mine" and "Other", each with a paying referred customer, a paid commission and a payout."""
    db = get_database(shop_settings)
    make_plan(db, "pro", base_fee="50.00")
    mine = partners.create_partner(db, "Mine", actor=ACTOR)
    other = partners.create_partner(db, "Other", actor=ACTOR)
    ids, pays = {}, {}
    for name, p in ((mine_customer, mine), ("other-customer", other)):
        commissions.create_rule(db, p["id"], "percent", percent="10", hold_days=0, actor=ACTOR)
        ids[name] = accounts.create_customer(db, name, "pro", email=f"{p['channel']['code']}@x.io", actor=ACTOR)["id"]
        attribution.bind_customer(db, shop_settings, ids[name], params={"ref": p["channel"]["code"]})
        inv = invoices.run_invoices(db, period(0), customer_id=ids[name], actor=ACTOR)["invoices"][0]["id"]
        invoices.finalize(db, inv, actor=ACTOR, now=month_start(1))
        invoices.pay(db, inv, actor=ACTOR)
    commissions.run_commissions(db, actor=ACTOR)
    for p in (mine, other):
        pays[p["id"]] = commissions.payout(db, p["id"], period(0), actor=ACTOR)["id"]
    return {"db": db, "mine": mine, "other": other, "ids": ids, "payouts": pays,
            "key": partners.create_partner_key(db, mine["id"], actor=ACTOR)["key"],
            "customer_key": keys.create_key(db, ids[mine_customer], actor=ACTOR)["key"]}
