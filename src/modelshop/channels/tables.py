"""Channel tables: channels and links, visits and touches, attributions, costs, partners, commissions.

Money is integer minor units (`*_minor`), rates are basis points (`*_bp`, 1250 = 12.5 %).
Two tables are ledgers guarded in code (`channels.commission_guards`): a commission entry never changes its
amount (a correction is a new entry) and a paid one never changes at all; an attribution changes
only through `attribution.rebind`, the explicit audited admin action. The commission ledger, its
rules' terms and payout statements are also guarded by database triggers (migration `channels_0002`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelshop.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
KINDS = ("direct", "reseller", "marketplace", "affiliate", "campaign")
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")


class Partner(Base):
    """A partner or reseller: its own key (`PartnerKey`), its channels, its commission rules."""

    __tablename__ = "channels_partners"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("billing_resellers.id"))  # set: may create customers
    status: Mapped[str] = mapped_column(String(10), default="active")   # active | suspended
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Channel(Base):
    __tablename__ = "channels_channels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)          # the referral code, ?ref=CODE
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))                       # one of KINDS
    partner_id: Mapped[int | None] = mapped_column(ForeignKey("channels_partners.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Link(Base):
    """A tracking link of a channel: the UTM values a visit must carry to count for it."""

    __tablename__ = "channels_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels_channels.id"), index=True)
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    landing: Mapped[str] = mapped_column(String(300), default="/store")
    with_ref: Mapped[bool] = mapped_column(default=True)                # the URL carries ?ref=CODE too
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Visit(Base):
    """A first-party visitor id (cookie) landing on a storefront page: its first view of that page,
    one row however often it comes back (nothing about the person is kept)."""

    __tablename__ = "channels_visits"
    __table_args__ = (Index("ix_channels_visits_at", "occurred_at"),
                      Index("uq_channels_visits_visitor_path", "visitor_id", "path", unique=True))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(36))
    path: Mapped[str] = mapped_column(String(300))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Touch(Base):
    """A visit that arrived through a channel (`?ref=` or a link's `utm_*`)."""

    __tablename__ = "channels_touches"
    __table_args__ = (Index("ix_channels_touches_visitor_at", "visitor_id", "occurred_at"),
                      Index("ix_channels_touches_channel_at", "channel_id", "occurred_at"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(36))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels_channels.id"))
    link_id: Mapped[int | None] = mapped_column(ForeignKey("channels_links.id"))
    ref: Mapped[str | None] = mapped_column(String(64))
    utm_source: Mapped[str | None] = mapped_column(String(200))
    utm_medium: Mapped[str | None] = mapped_column(String(200))
    utm_campaign: Mapped[str | None] = mapped_column(String(200))
    utm_term: Mapped[str | None] = mapped_column(String(200))
    utm_content: Mapped[str | None] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(300))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Attribution(Base):
    """The channel a customer is bound to; set once at signup, changed only by `attribution.rebind`."""

    __tablename__ = "channels_attributions"
    __table_args__ = (Index("ix_channels_attributions_channel", "channel_id"),)

    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"), primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels_channels.id"))
    touch_id: Mapped[int | None] = mapped_column(BigInteger, ForeignKey("channels_touches.id"))
    visitor_id: Mapped[str | None] = mapped_column(String(36))
    model: Mapped[str] = mapped_column(String(10))        # first | last | direct | partner | admin
    bound_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Cost(Base):
    """What a channel cost in a month: ad spend, partner fees, other (entered or imported from CSV)."""

    __tablename__ = "channels_costs"
    __table_args__ = (UniqueConstraint("channel_id", "month", "kind", "currency", name="uq_channels_costs"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels_channels.id"))
    month: Mapped[str] = mapped_column(String(7))                       # YYYY-MM
    kind: Mapped[str] = mapped_column(String(20))                       # ad_spend | partner_fee | other
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(300), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PartnerKey(Base):
    """A partner's bearer key (`ms_partner_…`): only its SHA-256 and a display prefix are kept."""

    __tablename__ = "channels_partner_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("channels_partners.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(10), default="active")   # active | revoked
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CommissionRule(Base):
    """A percentage of paid invoices (tiered by monthly volume, for N months or forever) or a bounty."""

    __tablename__ = "channels_commission_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("channels_partners.id"), index=True)
    kind: Mapped[str] = mapped_column(String(10))                       # percent | bounty
    currency: Mapped[str] = mapped_column(String(3))
    tiers: Mapped[list | None] = mapped_column(JSON)                    # [[volume_from_minor, rate_bp], ...]
    months: Mapped[int | None] = mapped_column(Integer)                 # None: forever
    bounty_minor: Mapped[int | None] = mapped_column(BigInteger)
    hold_days: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="active")   # active | ended
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Commission(Base):
    """One entry of the commission ledger: accrual, adjustment (a tier moved) or clawback (negative)."""

    __tablename__ = "channels_commissions"
    __table_args__ = (Index("ix_channels_commissions_partner_status", "partner_id", "status"),
                      Index("ix_channels_commissions_rule_customer", "rule_id", "customer_id"))

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("channels_partners.id"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("channels_commission_rules.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"))
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("billing_invoices.id"))
    entry: Mapped[str] = mapped_column(String(12))                      # accrual | adjustment | clawback
    period: Mapped[str] = mapped_column(String(7))                      # the invoice's period
    currency: Mapped[str] = mapped_column(String(3))
    base_minor: Mapped[int] = mapped_column(BigInteger)                 # the invoice amount it is a share of
    rate_bp: Mapped[int | None] = mapped_column(Integer)
    amount_minor: Mapped[int] = mapped_column(BigInteger)               # signed: clawbacks are negative
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending | approved | paid
    hold_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("channels_payouts.id"))
    note: Mapped[str] = mapped_column(String(200), default="")


class Payout(Base):
    """A monthly payout statement: the approved entries it paid, netted."""

    __tablename__ = "channels_payouts"
    __table_args__ = (UniqueConstraint("partner_id", "month", "currency", name="uq_channels_payouts"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("channels_partners.id"))
    month: Mapped[str] = mapped_column(String(7))
    currency: Mapped[str] = mapped_column(String(3))
    total_minor: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class JobLock(Base):
    """A row a job updates first, so two runs of it (any replica, any backend) take turns."""

    __tablename__ = "channels_locks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    taken_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
