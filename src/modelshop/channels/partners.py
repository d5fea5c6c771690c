"""Partner accounts, their keys, and everything a partner may see — scoped in every query.

A partner's customers are the customers bound to one of its channels. Every read here takes the
partner id and filters by it in SQL, so a partner key can never reach another partner's (or an
unreferred) customer: asking for one answers 404, exactly like a missing one. A partner that is
also a reseller (`reseller_id`) may create customers under it; billing gives those customers the
reseller's wholesale discount on their invoices.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelshop.billing import accounts, audit, keys
from modelshop.billing.money import fmt
from modelshop.billing.periods import parse_period, period_of
from modelshop.billing.tables import Customer, Invoice, Plan, Reseller, UsageCounter
from modelshop.channels.channels import create_channel
from modelshop.channels.tables import Attribution, Channel, Partner, PartnerKey
from modelshop.db import Database, utcnow
from modelshop.errors import Forbidden, NotFound, Unauthorized, ValidationError
from modelshop.gate import Principal

PREFIX = "ms_partner_"
SHOWN = 6


@dataclass(frozen=True)
class PartnerCaller:
    """An authenticated partner key: the gate's `Principal(kind="partner")` and the partner it belongs to."""

    principal: Principal
    partner_id: int


def partner_view(p: Partner, reseller: Reseller | None = None) -> dict:
    return {"id": p.id, "name": p.name, "email": p.email, "status": p.status, "reseller_id": p.reseller_id,
            "discount_percent": str(Decimal(reseller.discount_bp).scaleb(-2)) if reseller else None,
            "created_at": p.created_at.isoformat()}


def load_partner(s: Session, partner_id: int) -> Partner:
    p = s.get(Partner, partner_id)
    if p is None:
        raise NotFound(f"partner {partner_id} does not exist; list them with `modelshop partners list`")
    return p


def create_partner(db: Database, name: str, *, kind: str = "affiliate", email: str | None = None,
                   reseller_discount: object = None, actor: str) -> dict:
    """A partner and its first channel (of `kind`); `reseller_discount` (percent) makes it a reseller."""
    if not name or not name.strip():
        raise ValidationError("name: a partner needs a name")
    if email is not None and not accounts.EMAIL_RE.match(email):
        raise ValidationError(f'email: "{email}" is not an e-mail address')
    reseller = None
    if reseller_discount is not None:
        reseller = accounts.create_reseller(db, name.strip(), reseller_discount, actor=actor)
        kind = "reseller"
    with db.session() as s:
        if s.scalar(select(Partner.id).where(Partner.name == name.strip())) is not None:
            raise ValidationError(f'a partner named "{name.strip()}" already exists')
        p = Partner(name=name.strip(), email=email, reseller_id=reseller["id"] if reseller else None,
                    status="active", created_at=utcnow())
        s.add(p)
        s.flush()
        audit.log(s, actor, "partner.create", "partner", p.id, name=p.name, reseller_id=p.reseller_id)
        view = partner_view(p, s.get(Reseller, p.reseller_id) if p.reseller_id else None)
    channel = create_channel(db, name.strip(), kind, partner_id=view["id"], actor=actor)
    return {**view, "channel": channel}


def list_partners(db: Database) -> list[dict]:
    with db.session() as s:
        rows = s.execute(select(Partner, Reseller).outerjoin(Reseller, Partner.reseller_id == Reseller.id)
                         .order_by(Partner.id))
        return [partner_view(p, r) for p, r in rows]


def get_partner(db: Database, partner_id: int) -> dict:
    with db.session() as s:
        p = load_partner(s, partner_id)
        return partner_view(p, s.get(Reseller, p.reseller_id) if p.reseller_id else None)


def create_partner_key(db: Database, partner_id: int, *, actor: str) -> dict:
    """A partner key; the returned `key` is the only time the secret is seen."""
    secret = PREFIX + keys.new_secret().removeprefix(keys.PREFIXES["customer"])
    with db.session() as s:
        load_partner(s, partner_id)
        row = PartnerKey(partner_id=partner_id, key_hash=keys.hash_key(secret), prefix=secret[:len(PREFIX) + SHOWN],
                         status="active", created_at=utcnow())
        s.add(row)
        s.flush()
        audit.log(s, actor, "partner.key_create", "partner", partner_id, key_id=row.id, prefix=row.prefix)
        return {"id": row.id, "partner_id": partner_id, "prefix": row.prefix, "key": secret}


def revoke_partner_key(db: Database, key_id: int, *, actor: str) -> dict:
    with db.session() as s:
        row = s.get(PartnerKey, key_id)
        if row is None:
            raise NotFound(f"partner key {key_id} does not exist")
        if row.status != "revoked":
            row.status, row.revoked_at = "revoked", utcnow()
            audit.log(s, actor, "partner.key_revoke", "partner", row.partner_id, key_id=row.id, prefix=row.prefix)
        return {"id": row.id, "partner_id": row.partner_id, "prefix": row.prefix, "status": row.status}


def authenticate(db: Database, token: str | None) -> PartnerCaller:
    """A partner key → the partner it belongs to; 401 for an unknown or revoked key, 403 if suspended."""
    if not token or not token.startswith(PREFIX):
        raise Unauthorized("this route needs a partner key (ms_partner_…): send Authorization: Bearer <key>")
    digest = keys.hash_key(token)
    with db.session() as s:
        row = s.scalar(select(PartnerKey).where(PartnerKey.key_hash == digest))
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            raise Unauthorized("invalid partner key")
        if row.status != "active":
            raise Unauthorized(f"partner key {row.prefix}… was revoked; ask for a new one")
        partner = s.get(Partner, row.partner_id)
        if partner.status != "active":
            raise Forbidden(f"partner account {partner.id} is suspended; contact your channel manager")
        return PartnerCaller(Principal(kind="partner", key_id=row.id, label=row.prefix), partner.id)


# --- what a partner sees: always filtered by its id in SQL -------------------------------------

def _mine(q, partner_id: int):
    return (q.join(Attribution, Attribution.customer_id == Customer.id)
            .join(Channel, Channel.id == Attribution.channel_id).where(Channel.partner_id == partner_id))


def customers(db: Database, partner_id: int, customer_id: int | None = None) -> list[dict]:
    """The partner's referred customers (or the one asked for) with plan, channel and this month's requests."""
    month = period_of(utcnow(), "month")
    q = _mine(select(Customer, Plan.code, Channel.code, Attribution.bound_at, UsageCounter.requests)
              .join(Plan, Plan.id == Customer.plan_id)
              .outerjoin(UsageCounter, (UsageCounter.customer_id == Customer.id) & (UsageCounter.month == month)),
              partner_id).order_by(Customer.id)
    if customer_id is not None:
        q = q.where(Customer.id == customer_id)
    with db.session() as s:
        return [{"id": c.id, "name": c.name, "email": c.email, "status": c.status, "plan": plan,
                 "channel": code, "bound_at": bound.isoformat(), "created_at": c.created_at.isoformat(),
                 "requests_this_month": int(req or 0)} for c, plan, code, bound, req in s.execute(q)]


def customer(db: Database, partner_id: int, customer_id: int) -> dict:
    """One referred customer; another's (or a missing one) answers the same NotFound."""
    rows = customers(db, partner_id, customer_id)
    if not rows:
        raise NotFound(f"customer {customer_id} does not exist")
    return rows[0]


USAGE_METRICS = ("requests", "tokens", "characters", "input_tokens", "output_tokens")


def usage(db: Database, partner_id: int, period: str | None = None) -> dict:
    """Units per referred customer over a month (default: this one), from billing's counters: requests,
    tokens, characters, and a generative model's input and output tokens."""
    period = period or period_of(utcnow(), "month")
    _, _, kind = parse_period(period)
    months = [period] if kind == "month" else [f"{period}-{m:02d}" for m in range(1, 13)]
    q = _mine(select(Customer.id, Customer.name, *(func.sum(getattr(UsageCounter, m)) for m in USAGE_METRICS))
              .join(UsageCounter, UsageCounter.customer_id == Customer.id), partner_id) \
        .where(UsageCounter.month.in_(months)).group_by(Customer.id, Customer.name).order_by(Customer.id)
    with db.session() as s:
        rows = [{"customer_id": c, "customer": n, **{m: int(v or 0) for m, v in zip(USAGE_METRICS, sums, strict=True)}}
                for c, n, *sums in s.execute(q)]
    totals = {m: sum(r[m] for r in rows) for m in USAGE_METRICS}
    return {"period": period, "totals": totals, "customers": rows}


def invoices(db: Database, partner_id: int, *, period: str | None = None) -> list[dict]:
    """The referred customers' invoices (amounts only; never another customer's)."""
    q = _mine(select(Invoice, Customer.name).join(Customer, Customer.id == Invoice.customer_id), partner_id) \
        .order_by(Invoice.id)
    if period:
        parse_period(period)
        q = q.where(Invoice.period == period)
    with db.session() as s:
        return [{"id": i.id, "number": f"INV-{i.number:06d}" if i.number else None, "customer_id": i.customer_id,
                 "customer": name, "period": i.period, "status": i.status, "currency": i.currency,
                 "amount": fmt(i.subtotal_minor - i.discount_minor, i.currency),
                 "total": fmt(i.total_minor, i.currency),
                 "paid_at": i.paid_at.isoformat() if i.paid_at else None} for i, name in s.execute(q)]


def create_customer(db: Database, partner_id: int, name: str, plan: str, *, email: str | None = None,
                    actor: str) -> dict:
    """A reseller's new customer: under its reseller account, bound to its channel, with a first key."""
    with db.session() as s:
        p = load_partner(s, partner_id)
        if p.reseller_id is None:
            raise Forbidden("only a reseller partner may create customers; ask your channel manager")
        channel = s.scalar(select(Channel).where(Channel.partner_id == p.id).order_by(
            (Channel.kind != "reseller"), Channel.id).limit(1))
        if channel is None:
            raise ValidationError(f"partner {p.id} has no channel to bind customers to; create one first")
        reseller_id, channel_id = p.reseller_id, channel.id
    made = accounts.create_customer(db, name, plan, email=email, reseller_id=reseller_id, actor=actor)
    with db.session() as s:
        s.add(Attribution(customer_id=made["id"], channel_id=channel_id, model="partner", bound_at=utcnow()))
    key = keys.create_key(db, made["id"], name="created by reseller", actor=actor)
    return {"customer": made, "channel_id": channel_id, "key": key}
