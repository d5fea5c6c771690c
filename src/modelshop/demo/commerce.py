"""The demo's business side: the bundled plans, a demo customer on pay-as-you-go, and its key."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from modelshop.billing.accounts import create_customer, create_plan
from modelshop.billing.keys import create_key
from modelshop.billing.plans import load_plan_file
from modelshop.billing.tables import Customer
from modelshop.db import Database

PLANS = Path(__file__).parent / "plans"
ACTOR = "demo"
CUSTOMER = "Demo Customer"


def seed_billing(db: Database) -> dict:
    """Plans (free, payg, pro), the demo customer (once) and a fresh key for it (shown once)."""
    plans = [create_plan(db, load_plan_file(p), actor=ACTOR)["code"] for p in sorted(PLANS.glob("*.yaml"))]
    with db.session() as s:
        customer_id = s.scalar(select(Customer.id).where(Customer.name == CUSTOMER))
    if customer_id is None:
        customer_id = create_customer(db, CUSTOMER, "payg", email="demo@example.com", actor=ACTOR)["id"]
    key = create_key(db, customer_id, rpm=600, name="demo", actor=ACTOR)
    return {"plans": plans, "customer_id": customer_id, "key": key["key"], "key_id": key["id"]}
