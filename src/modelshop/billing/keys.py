"""API keys: made from `secrets`, shown once, stored as a SHA-256 hash and a display prefix.

Customer keys (`ms_live_…`) carry scopes (models), rpm/tpm limits and an expiry; admin keys
(`ms_admin_…`) belong to no customer and reach only admin routes. Nothing here logs a key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from sqlalchemy import select

from modelshop.billing import audit
from modelshop.billing.accounts import changes_auth, load_customer
from modelshop.billing.tables import ApiKey, Customer
from modelshop.db import Database, utcnow
from modelshop.errors import NotFound, ValidationError

PREFIXES = {"customer": "ms_live_", "admin": "ms_admin_"}
SHOWN = 6  # characters of the random part kept in the display prefix
MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(kind: str = "customer") -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def key_view(k: ApiKey) -> dict:
    """What may be shown of a key: never its hash, never the secret."""
    return {"id": k.id, "kind": k.kind, "customer_id": k.customer_id, "name": k.name, "prefix": k.prefix,
            "models": k.models, "rpm": k.rpm, "tpm": k.tpm, "status": k.status,
            "expires_at": k.expires_at.isoformat() if k.expires_at else None,
            "created_at": k.created_at.isoformat(),
            "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None,
            "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}


def parse_expiry(value: dt.datetime | str | None) -> dt.datetime | None:
    """An ISO-8601 time (UTC when it has no zone) that must lie in the future."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(f'expires: "{value}" is not an ISO-8601 time, e.g. 2027-01-31T00:00:00Z') from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if value <= utcnow():
        raise ValidationError(f"expires: {value.isoformat()} is in the past")
    return value.astimezone(dt.UTC)


def _check_limits(models: list[str] | None, rpm: int | None, tpm: int | None) -> list[str] | None:
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValidationError(f"{name}: expected a whole number of at least 1, found {value!r}")
    if models is None:
        return None
    models = [m.strip() for m in models if m and m.strip()]
    for m in models:
        if not MODEL_RE.match(m):
            raise ValidationError(f'models: "{m}" is not a model name (NAME or NAME:VERSION)')
    if not models:
        raise ValidationError("models: give at least one model name, or leave it out to allow every model")
    return sorted(set(models))


def _insert(s, kind: str, customer_id: int | None, name: str, models, rpm, tpm, expires_at,
            replaces_id: int | None = None) -> tuple[ApiKey, str]:
    secret = new_secret(kind)
    row = ApiKey(kind=kind, customer_id=customer_id, name=name, key_hash=hash_key(secret),
                 prefix=secret[: len(PREFIXES[kind]) + SHOWN], models=models, rpm=rpm, tpm=tpm, status="active",
                 expires_at=expires_at, created_at=utcnow(), replaces_id=replaces_id)
    s.add(row)
    s.flush()
    return row, secret


def create_key(db: Database, customer_id: int, *, models: list[str] | None = None, rpm: int | None = None,
               tpm: int | None = None, expires: dt.datetime | str | None = None, name: str = "",
               actor: str) -> dict:
    """A new customer key; the returned `key` is the only time the secret is seen."""
    models = _check_limits(models, rpm, tpm)
    expires_at = parse_expiry(expires)
    with db.session() as s:
        load_customer(s, customer_id)
        row, secret = _insert(s, "customer", customer_id, name, models, rpm, tpm, expires_at)
        audit.log(s, actor, "key.create", "key", row.id, customer_id=customer_id, prefix=row.prefix,
                  models=models, rpm=rpm, tpm=tpm, expires_at=expires_at.isoformat() if expires_at else None)
        return {**key_view(row), "key": secret}


def create_admin_key(db: Database, *, name: str, actor: str) -> dict:
    """A database admin key (beside the environment's `MODELSHOP_ADMIN_KEY`)."""
    if not name.strip():
        raise ValidationError("name: an admin key needs a name saying who holds it")
    with db.session() as s:
        row, secret = _insert(s, "admin", None, name.strip(), None, None, None, None)
        audit.log(s, actor, "key.create", "key", row.id, kind="admin", prefix=row.prefix, name=row.name)
        return {**key_view(row), "key": secret}


def _owned(s, key_id: int, customer_id: int | None) -> ApiKey:
    """The key, locked until the transaction ends (FOR NO KEY UPDATE on PostgreSQL; on SQLite the
    caller's write session holds the writer lock): its status is read to decide what to write."""
    row = s.get(ApiKey, key_id, with_for_update={"key_share": True}, populate_existing=True)
    # another customer's key is reported exactly like a missing one: nothing leaks about it
    if row is None or (customer_id is not None and row.customer_id != customer_id):
        raise NotFound(f"key {key_id} does not exist")
    return row


@changes_auth
def revoke_key(db: Database, key_id: int, *, actor: str, customer_id: int | None = None) -> dict:
    """Revoke a key at once; `customer_id` restricts it to that customer's keys (self-service)."""
    with db.write_session() as s:
        row = _owned(s, key_id, customer_id)
        if row.status != "revoked":
            row.status, row.revoked_at = "revoked", utcnow()
            audit.log(s, actor, "key.revoke", "key", row.id, prefix=row.prefix, customer_id=row.customer_id)
        return key_view(row)


@changes_auth
def rotate_key(db: Database, key_id: int, *, actor: str, customer_id: int | None = None) -> dict:
    """Revoke a key and issue its replacement with the same scopes and limits; returns the new secret.

    Two rotations of one key at once: the second waits for the first and then finds the key revoked,
    so a key never has two replacements."""
    with db.write_session() as s:
        old = _owned(s, key_id, customer_id)
        if old.status == "revoked":
            raise ValidationError(f"key {key_id} is revoked; create a new key instead of rotating it")
        old.status, old.revoked_at = "revoked", utcnow()
        row, secret = _insert(s, old.kind, old.customer_id, old.name, old.models, old.rpm, old.tpm,
                              old.expires_at, replaces_id=old.id)
        audit.log(s, actor, "key.rotate", "key", row.id, replaces=old.id, prefix=row.prefix,
                  customer_id=row.customer_id)
        return {**key_view(row), "key": secret}


def list_keys(db: Database, customer_id: int | None = None) -> list[dict]:
    q = select(ApiKey).order_by(ApiKey.id)
    if customer_id is not None:
        q = q.where(ApiKey.customer_id == customer_id)
    with db.session() as s:
        return [key_view(k) for k in s.scalars(q)]


def lookup_secret(db: Database, secret: str):
    """What authentication needs of the key whose hash matches (one indexed Core query, no ORM objects):
    a row with the key's id, kind, key_hash, prefix, models, rpm, tpm, status, expires_at, revoked_at,
    customer_id, and its customer's `customer_status` and `plan_id`; None when no key has that hash."""
    digest = hash_key(secret)
    q = (select(ApiKey.id, ApiKey.kind, ApiKey.key_hash, ApiKey.prefix, ApiKey.models, ApiKey.rpm, ApiKey.tpm,
                ApiKey.status, ApiKey.expires_at, ApiKey.revoked_at, ApiKey.customer_id,
                Customer.status.label("customer_status"), Customer.plan_id)
         .outerjoin(Customer, ApiKey.customer_id == Customer.id).where(ApiKey.key_hash == digest))
    with db.engine.connect() as c:
        return c.execute(q).first()
