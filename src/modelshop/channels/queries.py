"""Read-only questions the console asks that join channel tables with billing's.

`web` holds no SQL: a page asks a named question here (or in `billing.queries`, for billing's
tables alone) and gets plain dicts back. They live in channels because channels may read
billing's tables and billing must not know channels. Each function is one short read; none writes.

May import: db, errors, billing (tables, queries), channels.
"""

from __future__ import annotations

from sqlalchemy import func, select

from modelshop.billing import queries as billing_queries
from modelshop.billing.tables import ApiKey, Customer, Plan
from modelshop.channels.channels import channel_view, find_channel
from modelshop.channels.tables import Attribution, Channel
from modelshop.db import Database


def overview_counts(db: Database) -> dict[str, int]:
    """The console home's counts: customers, active API keys and channels."""
    counts = billing_queries.account_counts(db)
    with db.session() as s:
        counts["channels"] = s.scalar(select(func.count()).select_from(Channel))
    return counts


def customers_with_channel(db: Database, *, limit: int) -> list[dict]:
    """The newest `limit` customers, each with its plan's code, the channel it is bound to (and how:
    `bound_by` is the attribution model) and its number of active keys; one statement."""
    keys = (select(ApiKey.customer_id, func.count().label("n")).where(ApiKey.status == "active")
            .group_by(ApiKey.customer_id).subquery())
    q = (select(Customer, Plan.code, Channel.code, Attribution.model, keys.c.n)
         .join(Plan, Plan.id == Customer.plan_id)
         .outerjoin(Attribution, Attribution.customer_id == Customer.id)
         .outerjoin(Channel, Channel.id == Attribution.channel_id)
         .outerjoin(keys, keys.c.customer_id == Customer.id).order_by(Customer.id.desc()).limit(limit))
    with db.session() as s:
        return [{"id": c.id, "name": c.name, "email": c.email, "status": c.status, "plan": plan,
                 "channel": code, "bound_by": model, "keys": n or 0, "created_at": c.created_at}
                for c, plan, code, model, n in s.execute(q)]


def get_channel(db: Database, ref: str | int) -> dict:
    """One channel by id or code (`channels.channel_view`); NotFound, with the closest code, otherwise."""
    with db.session() as s:
        return channel_view(find_channel(s, ref))


def bound_customers(db: Database, channel_id: int, *, limit: int) -> list[dict]:
    """The newest `limit` customers bound to the channel, with how (`bound_by`) and when they were bound."""
    q = (select(Customer, Attribution).join(Attribution, Attribution.customer_id == Customer.id)
         .where(Attribution.channel_id == channel_id).order_by(Customer.id.desc()).limit(limit))
    with db.session() as s:
        return [{"id": c.id, "name": c.name, "email": c.email, "bound_by": a.model, "bound_at": a.bound_at}
                for c, a in s.execute(q)]
