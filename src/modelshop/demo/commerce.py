"""The demo's business side: the bundled plans, a demo customer and its key, and two sales channels.

Channels: a reseller partner (wholesale discount, a commission rule, customers it created) and a
newsletter campaign (a tracking link with `utm_*`, this month's ad spend, visitors of whom some
signed up through the link). Each of their customers makes a few real calls to the demo model
(timed here, metered through the usage ledger) and has this month's draft invoice, so the
console's funnel, revenue and CAC/ROI are not empty. Running it again adds nothing twice:
things are found by name or e-mail, the demo customer keeps its key, and the calls carry
idempotency keys.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from sqlalchemy import func, select

from modelshop.billing import invoices, keys, usage
from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.keys import create_key
from modelshop.billing.periods import period_of
from modelshop.billing.plans import load_plan_file
from modelshop.billing.tables import ApiKey, Customer
from modelshop.channels import attribution, channels, commissions, partners
from modelshop.channels.tables import Channel, Partner
from modelshop.db import Database, utcnow
from modelshop.settings import Settings

PLANS = Path(__file__).parent / "plans"
ACTOR = "demo"
CUSTOMER = "Demo Customer"
KEY_NAME = "demo"

RESELLER = "Northwind Solutions"
RESELLER_DISCOUNT = "20"          # percent off list price for its customers (wholesale)
RESELLER_COMMISSION = "10"        # percent of its customers' paid invoices, for 12 months
RESELLER_CUSTOMERS = (("Harbor Logistics", "ops@harbor-logistics.example", "pro"),
                      ("Mint Retail", "it@mint-retail.example", "payg"))
CAMPAIGN = ("Spring Newsletter", "spring-newsletter")
CAMPAIGN_UTM = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "spring"}
CAMPAIGN_AD_SPEND = "120.00"
CAMPAIGN_SIGNUPS = (("ana@lumen-books.example", "pro"), ("wei@qingshan-tea.example", "payg"),
                    ("sam@brightdesk.example", "payg"))
CAMPAIGN_VISITORS_ONLY = 4        # newsletter readers who looked and left
CALLS = (12, 7, 5)                # real calls per customer, in turn


def seed_billing(db: Database, *, new_key: bool = False) -> dict:
    """Plans (free, payg, pro), the demo customer (once) and its key (once).

    A key is shown once and kept only as a hash, so a second run cannot show it again: it reuses
    the key (`key` is None, `key_id` and `key_prefix` say which) unless `new_key` asks to rotate it,
    which revokes the old one and shows its replacement. A revoked demo key is replaced by a new one.
    """
    plans = [create_plan(db, load_plan_file(p), actor=ACTOR)["code"] for p in sorted(PLANS.glob("*.yaml"))]
    with db.session() as s:
        customer_id = s.scalar(select(Customer.id).where(Customer.name == CUSTOMER))
    if customer_id is None:
        customer_id = create_customer(db, CUSTOMER, "payg", email="demo@example.com", actor=ACTOR)["id"]
    with db.session() as s:
        existing = s.execute(select(ApiKey.id, ApiKey.prefix).where(
            ApiKey.customer_id == customer_id, ApiKey.name == KEY_NAME, ApiKey.status == "active")
            .order_by(ApiKey.id.desc()).limit(1)).first()
    out = {"plans": plans, "customer_id": customer_id, "replaced_key_id": None}
    if existing is not None and not new_key:
        return {**out, "key": None, "key_id": existing.id, "key_prefix": existing.prefix}
    if existing is not None:
        key = keys.rotate_key(db, existing.id, actor=ACTOR)
        out["replaced_key_id"] = existing.id
    else:
        key = create_key(db, customer_id, rpm=600, name=KEY_NAME, actor=ACTOR)
    return {**out, "key": key["key"], "key_id": key["id"], "key_prefix": key["prefix"]}


def describe_key(commerce: dict) -> str:
    """What the demo says about the demo customer's key: the key itself only when it was just made."""
    if commerce["key"]:
        replaced = f"; key {commerce['replaced_key_id']} is revoked" if commerce["replaced_key_id"] else ""
        return f"customer API key (shown once, store it now{replaced}): {commerce['key']}"
    return (f"customer API key: key {commerce['key_id']} ({commerce['key_prefix']}…), shown when the first run "
            f"made it and kept only as a hash; `modelshop demo --new-key` replaces it, "
            f"`modelshop keys create --customer {commerce['customer_id']}` adds another")


def _customer_by_email(db: Database, email: str) -> int | None:
    with db.session() as s:
        return s.scalar(select(Customer.id).where(func.lower(Customer.email) == email.lower()))


def _reseller(db: Database, settings: Settings) -> dict:
    with db.session() as s:
        partner_id = s.scalar(select(Partner.id).where(Partner.name == RESELLER))
    if partner_id is None:
        partner_id = partners.create_partner(db, RESELLER, email="partners@northwind.example",
                                             reseller_discount=RESELLER_DISCOUNT, actor=ACTOR)["id"]
    if not commissions.list_rules(db, partner_id):
        commissions.create_rule(db, partner_id, "percent", percent=RESELLER_COMMISSION, months=12,
                                currency=settings.channels_currency, hold_days=settings.commission_hold_days,
                                actor=ACTOR)
    with db.session() as s:
        code = s.scalar(select(Channel.code).where(Channel.partner_id == partner_id).order_by(Channel.id).limit(1))
    customers = []
    for name, email, plan in RESELLER_CUSTOMERS:
        cid = _customer_by_email(db, email)
        if cid is None:
            cid = partners.create_customer(db, partner_id, name, plan, email=email, actor=ACTOR)["customer"]["id"]
        customers.append(cid)
    return {"code": code, "kind": "reseller", "partner_id": partner_id, "customers": customers}


def _campaign(db: Database, settings: Settings) -> dict:
    name, code = CAMPAIGN
    with db.session() as s:
        fresh = s.scalar(select(Channel.id).where(Channel.code == code)) is None
    if fresh:
        channels.create_channel(db, name, "campaign", code=code, actor=ACTOR)
        channels.create_link(db, code, actor=ACTOR, **CAMPAIGN_UTM)
        channels.set_cost(db, code, period_of(utcnow(), "month"), CAMPAIGN_AD_SPEND, kind="ad_spend",
                          currency=settings.channels_currency, note="demo: newsletter sponsorship", actor=ACTOR)
        for _ in range(CAMPAIGN_VISITORS_ONLY):
            attribution.record_visit(db, attribution.new_visitor_id(), "/store", {"ref": code, **CAMPAIGN_UTM})
    customers = []
    for email, plan in CAMPAIGN_SIGNUPS:
        cid = _customer_by_email(db, email)
        if cid is None:  # the reader arrives through the link, looks at a model, and signs up
            visitor = attribution.new_visitor_id()
            attribution.record_visit(db, visitor, "/store", {"ref": code, **CAMPAIGN_UTM})
            cid = attribution.signup(db, settings, email=email, plan=plan, visitor_id=visitor)["customer"]["id"]
        customers.append(cid)
    return {"code": code, "kind": "campaign", "customers": customers}


def _calls(db: Database, predictor, model_ref: str, customer_id: int, texts: list[str], n: int) -> int:
    """`n` real calls of the model for the customer, timed and written to the usage ledger (once)."""
    with db.session() as s:
        key_id = s.scalar(select(ApiKey.id).where(ApiKey.customer_id == customer_id, ApiKey.status == "active")
                          .order_by(ApiKey.id).limit(1))
    if key_id is None:
        key_id = keys.create_key(db, customer_id, name="demo", actor=ACTOR)["id"]
    batch = []
    for i in range(n):
        text = texts[(customer_id * 7 + i) % len(texts)]
        started = time.perf_counter()
        predictor.predict_proba([text])
        took = time.perf_counter() - started
        batch.append(usage.Metered(
            customer_id=customer_id, key_id=key_id, request_id=uuid.uuid4().hex, route="/predict", model=model_ref,
            requests=1, tokens=sum(predictor.count_tokens([text])), characters=len(text),
            compute_us=round(took * 1_000_000), occurred_at=utcnow(), idempotency_key=f"demo-seed-{customer_id}-{i}"))
    return sum(usage.write_batch(db, batch))


def seed_channels(db: Database, settings: Settings, *, predictor, model_ref: str, texts: list[str]) -> list[dict]:
    """The reseller and the campaign channel with their customers, usage and this month's draft invoices."""
    seeded = [_reseller(db, settings), _campaign(db, settings)]
    period = period_of(utcnow(), "month")
    n = 0
    for channel in seeded:
        for cid in channel["customers"]:
            _calls(db, predictor, model_ref, cid, texts, CALLS[n % len(CALLS)])
            n += 1
            invoices.run_invoices(db, period, customer_id=cid, actor=ACTOR)  # a draft; recomputed on a re-run
    return seeded
