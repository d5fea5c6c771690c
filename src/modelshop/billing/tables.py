"""Billing tables: plans, customers, keys, the usage ledger, invoices, the wallet, the audit log.

Money columns are integer minor units (`*_minor`); quantities and prices on invoice lines are
exact Decimals stored as text (`DecimalText`), so no backend ever turns them into floats.
Append-only tables (usage events, idempotency records, wallet entries, credit notes, audit log)
and finalised invoices are guarded twice: in code (`billing.ledger_guards`) and by database triggers
(migration `billing_0001`).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from modelshop.db import Base, UTCDateTime, utcnow

# BIGINT keys on PostgreSQL; SQLite only auto-increments a column declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class DecimalText(TypeDecorator):
    """An exact Decimal stored as its string form."""

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else str(Decimal(value))

    def process_result_value(self, value, dialect):
        return None if value is None else Decimal(value)


class Reseller(Base):
    __tablename__ = "billing_resellers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    discount_bp: Mapped[int] = mapped_column(Integer)          # wholesale discount in basis points (2000 = 20%)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Plan(Base):
    """One version of a plan; a changed plan file makes a new version, old ones stay as they were."""

    __tablename__ = "billing_plans"
    __table_args__ = (UniqueConstraint("code", "version", name="uq_billing_plans_code_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str] = mapped_column(String(10))
    spec: Mapped[dict] = mapped_column(JSON)                    # PlanSpec.to_dict()
    spec_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Customer(Base):
    """At most one customer per e-mail: `accounts.create_customer` stores it stripped and lower-cased,
    so a plain unique index is blind to case; customers without an e-mail (NULL) may be many."""

    __tablename__ = "billing_customers"
    __table_args__ = (Index("uq_billing_customers_email", "email", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    plan_id: Mapped[int] = mapped_column(ForeignKey("billing_plans.id"))
    reseller_id: Mapped[int | None] = mapped_column(ForeignKey("billing_resellers.id"))
    status: Mapped[str] = mapped_column(String(20), default="active")    # active | suspended
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A bearer key: only its SHA-256 and a display prefix are kept. `kind` admin keys have no customer."""

    __tablename__ = "billing_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), default="customer")   # customer | admin
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("billing_customers.id"), index=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))
    models: Mapped[list | None] = mapped_column(JSON)           # model names it may call; None: all
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), default="active")    # active | revoked
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("billing_api_keys.id"))


class UsageEvent(Base):
    """The append-only usage ledger: one row per successful metered call."""

    __tablename__ = "billing_usage_events"
    __table_args__ = (
        UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_usage_events_idem"),
        Index("ix_billing_usage_events_customer_at", "customer_id", "occurred_at"),
        Index("ix_billing_usage_events_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"))
    key_id: Mapped[int] = mapped_column(ForeignKey("billing_api_keys.id"))
    model: Mapped[str] = mapped_column(String(200))
    route: Mapped[str] = mapped_column(String(100))
    requests: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer)
    characters: Mapped[int] = mapped_column(Integer)
    # a generative call's prompt and generated tokens (also counted in `tokens`); 0 for other calls
    input_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    compute_us: Mapped[int] = mapped_column(BigInteger)         # compute time in microseconds
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # the units were counted here (an upstream that sent no usage), not reported by whoever served the call
    estimated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class IdempotencyRecord(Base):
    """The first reply to a request with an Idempotency-Key, written with its usage event."""

    __tablename__ = "billing_idempotency"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_idempotency"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    route: Mapped[str] = mapped_column(String(100))
    request_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # SHA-256 of the request (method, path, query, canonical body); NULL on rows from before it was kept
    fingerprint: Mapped[str | None] = mapped_column(String(64))


class IdempotencyClaim(Base):
    """An Idempotency-Key taken by a request still under way: held before inference, so a duplicate
    that arrives meanwhile is refused (409) instead of getting a second, unmetered answer. Deleted in
    the transaction that stores the reply, or when the call fails; a claim left by a crashed server
    can be taken over once it expires."""

    __tablename__ = "billing_idempotency_claims"
    __table_args__ = (UniqueConstraint("customer_id", "idempotency_key", name="uq_billing_idempotency_claims"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"))
    idempotency_key: Mapped[str] = mapped_column(String(255))
    route: Mapped[str] = mapped_column(String(100))
    fingerprint: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(64))        # the claimant: only it may release the claim
    claimed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class UsageCounter(Base):
    """Running totals per customer and calendar month, kept with the ledger for quota checks."""

    __tablename__ = "billing_usage_counters"

    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)      # YYYY-MM
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UsageModelCounter(Base):
    """The same running totals per model ("NAME:VERSION") too: what a plan whose charges or quota name
    models needs at admission, without reading the month's events."""

    __tablename__ = "billing_usage_model_counters"

    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)      # YYYY-MM
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    characters: Mapped[int] = mapped_column(BigInteger, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(Base):
    __tablename__ = "billing_invoices"
    # one open (non-void) invoice per customer and period, even when two runs race
    __table_args__ = (Index("uq_billing_invoices_open", "customer_id", "period", unique=True,
                            sqlite_where=text("status <> 'void'"), postgresql_where=text("status <> 'void'")),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int | None] = mapped_column(Integer, unique=True)    # given at finalisation, gapless
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("billing_plans.id"))
    period: Mapped[str] = mapped_column(String(7))              # YYYY-MM, or YYYY for yearly plans
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10), default="draft")     # draft | finalised | paid | void
    subtotal_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_applied_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    total_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    finalized_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    paid_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    voided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class InvoiceLine(Base):
    __tablename__ = "billing_invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("billing_invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))               # base_fee | usage | discount
    metric: Mapped[str | None] = mapped_column(String(20))
    models: Mapped[list | None] = mapped_column(JSON)           # model names a usage line priced; None: all
    description: Mapped[str] = mapped_column(String(300))
    quantity: Mapped[Decimal] = mapped_column(DecimalText)
    unit_price: Mapped[Decimal | None] = mapped_column(DecimalText)
    amount_minor: Mapped[int] = mapped_column(BigInteger)


class CreditNote(Base):
    """Issued when a finalised invoice is voided; numbered in its own sequence."""

    __tablename__ = "billing_credit_notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("billing_invoices.id"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WalletEntry(Base):
    """The prepaid wallet's own append-only ledger: top-ups (+), draws by invoices (-), refunds (+)."""

    __tablename__ = "billing_wallet_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("billing_customers.id"), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(12))               # topup | draw | refund | credit_note
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("billing_invoices.id"))
    note: Mapped[str] = mapped_column(String(300), default="")
    actor: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEntry(Base):
    """Who did what to which billing object, and when. Never holds a key."""

    __tablename__ = "billing_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


APPEND_ONLY = (UsageEvent, IdempotencyRecord, WalletEntry, CreditNote, AuditEntry)
