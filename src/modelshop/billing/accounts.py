"""Plans (versioned), resellers and customers: the catalogue and who is on which plan version.

A plan file that differs from the latest version of its code becomes a new version; customers
stay on the version they were put on until moved with `change_plan`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing import audit
from modelshop.billing.money import parse_decimal
from modelshop.billing.plans import PlanSpec, parse_plan
from modelshop.billing.tables import Customer, Plan, Reseller
from modelshop.db import Database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError, did_you_mean

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CUSTOMER_STATUSES = ("active", "suspended")


# Bumped by every change in this process to what authentication reads (a key revoked or rotated, a
# customer suspended or moved to another plan), so a server's short cache of keys forgets at once.
_changes = [0]


def changed() -> None:
    _changes[0] += 1


def changes_auth(fn):
    """Bump the generation once `fn` has committed (its session closes before it returns)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            changed()
    return wrapper


def generation() -> int:
    return _changes[0]


@functools.lru_cache(maxsize=1024)
def _spec_from_json(text: str) -> PlanSpec:
    return parse_plan(json.loads(text))


def plan_spec(plan: Plan) -> PlanSpec:
    """The validated spec of a stored plan version (versions never change, so this is cached)."""
    return _spec_from_json(json.dumps(plan.spec, sort_keys=True))


def plan_view(plan: Plan) -> dict:
    return {"id": plan.id, "code": plan.code, "version": plan.version, "currency": plan.currency,
            "interval": plan.interval, "spec": plan.spec, "created_at": plan.created_at.isoformat()}


def create_plan(db: Database, spec: PlanSpec, *, actor: str) -> dict:
    """Store `spec` as the next version of its code, or return the latest version when nothing changed."""
    canonical = spec.to_dict()
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    with db.write_session() as s:
        latest = s.scalars(select(Plan).where(Plan.code == spec.code).order_by(Plan.version.desc())).first()
        if latest is not None and latest.spec_sha256 == digest:
            return {**plan_view(latest), "created": False}
        plan = Plan(code=spec.code, version=(latest.version + 1) if latest else 1, currency=spec.currency,
                    interval=spec.interval, spec=canonical, spec_sha256=digest, created_at=utcnow())
        s.add(plan)
        try:
            s.flush()
        except IntegrityError:  # PostgreSQL: the same version number taken by a concurrent call
            raise Conflict(f"plan {spec.code} got a new version from another call at the same time; "
                           "list the plans and run it again if yours is not there") from None
        audit.log(s, actor, "plan.create", "plan", plan.id, code=plan.code, version=plan.version)
        return {**plan_view(plan), "created": True}


def find_plan(s: Session, code: str, version: int | None = None) -> Plan:
    q = select(Plan).where(Plan.code == code)
    q = q.where(Plan.version == version) if version else q.order_by(Plan.version.desc())
    plan = s.scalars(q).first()
    if plan is None:
        codes = s.scalars(select(Plan.code).distinct()).all()
        what = f"{code} version {version}" if version else code
        raise NotFound(f'plan "{what}" does not exist{did_you_mean(code, codes)}; '
                       "create it with `modelshop plans create --file PLAN.yaml`")
    return plan


def list_plans(db: Database) -> list[dict]:
    with db.session() as s:
        return [plan_view(p) for p in s.scalars(select(Plan).order_by(Plan.code, Plan.version))]


def parse_percent(value: object, where: str = "discount") -> int:
    """A percentage ("12.5") as basis points (1250), exactly."""
    percent = parse_decimal(value, where)
    bp = percent * 100
    if bp != bp.to_integral_value() or percent > 100:
        raise ValidationError(f'{where}: "{value}" must be a percentage from 0 to 100 with at most 2 decimals')
    return int(bp)


def reseller_view(r: Reseller) -> dict:
    return {"id": r.id, "name": r.name, "discount_percent": str(Decimal(r.discount_bp).scaleb(-2)),
            "created_at": r.created_at.isoformat()}


def create_reseller(db: Database, name: str, discount_percent: object, *, actor: str) -> dict:
    bp = parse_percent(discount_percent)
    if not name.strip():
        raise ValidationError("name: a reseller needs a name")
    with db.write_session() as s:
        if s.scalar(select(Reseller.id).where(Reseller.name == name)) is not None:
            raise ValidationError(f'a reseller named "{name}" already exists')
        r = Reseller(name=name, discount_bp=bp, created_at=utcnow())
        s.add(r)
        try:
            s.flush()
        except IntegrityError:  # PostgreSQL: created by a concurrent call after our check
            raise ValidationError(f'a reseller named "{name}" already exists') from None
        audit.log(s, actor, "reseller.create", "reseller", r.id, name=name, discount_bp=bp)
        return reseller_view(r)


def list_resellers(db: Database) -> list[dict]:
    with db.session() as s:
        return [reseller_view(r) for r in s.scalars(select(Reseller).order_by(Reseller.id))]


def customer_view(c: Customer, plan: Plan) -> dict:
    return {"id": c.id, "name": c.name, "email": c.email, "status": c.status, "plan": plan.code,
            "plan_version": plan.version, "currency": plan.currency, "reseller_id": c.reseller_id,
            "created_at": c.created_at.isoformat()}


def load_customer(s: Session, customer_id: int, *, lock: bool = False) -> Customer:
    """The customer row; `lock` holds it (FOR NO KEY UPDATE on PostgreSQL) until the transaction ends,
    for a flow that decides on what it read: two such flows on one customer then take turns."""
    c = (s.get(Customer, customer_id, with_for_update={"key_share": True}, populate_existing=True) if lock
         else s.get(Customer, customer_id))
    if c is None:
        raise NotFound(f"customer {customer_id} does not exist; list them with `modelshop customers list`")
    return c


def normalise_email(email: str | None) -> str | None:
    """The stored form of an e-mail: stripped and lower-cased (so Ann@X.io and ann@x.io are one customer)."""
    return None if email is None else email.strip().lower()


def create_customer(db: Database, name: str, plan: str, *, email: str | None = None,
                    reseller_id: int | None = None, actor: str) -> dict:
    """A customer on the latest version of plan `plan`; at most one customer has a given e-mail."""
    if not name or not name.strip():
        raise ValidationError("name: a customer needs a name")
    email = normalise_email(email)
    if email is not None and not EMAIL_RE.match(email):
        raise ValidationError(f'email: "{email}" is not an e-mail address')
    taken = Conflict(f"a customer with e-mail {email} already exists")
    with db.write_session() as s:
        plan_row = find_plan(s, plan)
        if reseller_id is not None and s.get(Reseller, reseller_id) is None:
            raise NotFound(f"reseller {reseller_id} does not exist")
        if email is not None and s.scalar(select(Customer.id).where(Customer.email == email)) is not None:
            raise taken
        c = Customer(name=name.strip(), email=email, plan_id=plan_row.id, reseller_id=reseller_id,
                     status="active", created_at=utcnow())
        s.add(c)
        try:
            s.flush()
        except IntegrityError as e:  # PostgreSQL: a signup with the same e-mail committed after our check
            if "email" in str(e.orig):
                raise taken from None
            raise
        audit.log(s, actor, "customer.create", "customer", c.id, name=c.name, plan=plan_row.code,
                  plan_version=plan_row.version, reseller_id=reseller_id)
        return customer_view(c, plan_row)


def get_customer(db: Database, customer_id: int) -> dict:
    with db.session() as s:
        c = load_customer(s, customer_id)
        return customer_view(c, s.get(Plan, c.plan_id))


def list_customers(db: Database) -> list[dict]:
    with db.session() as s:
        rows = s.execute(select(Customer, Plan).join(Plan, Customer.plan_id == Plan.id).order_by(Customer.id))
        return [customer_view(c, p) for c, p in rows]


@changes_auth
def change_plan(db: Database, customer_id: int, plan: str, *, version: int | None = None, actor: str) -> dict:
    """Move a customer to (the latest version of) another plan; the current period is billed on it."""
    with db.write_session() as s:
        c = load_customer(s, customer_id, lock=True)
        new = find_plan(s, plan, version)
        old = s.get(Plan, c.plan_id)
        if new.currency != old.currency:
            raise ValidationError(f"plan {new.code} is in {new.currency} but the customer's wallet and "
                                  f"invoices are in {old.currency}; create a plan in {old.currency}")
        c.plan_id = new.id
        audit.log(s, actor, "customer.change_plan", "customer", c.id, plan=new.code, version=new.version,
                  previous=f"{old.code}:{old.version}")
        return customer_view(c, new)


@changes_auth
def set_status(db: Database, customer_id: int, status: str, *, actor: str) -> dict:
    if status not in CUSTOMER_STATUSES:
        raise ValidationError(f'status: "{status}" is not one of {", ".join(CUSTOMER_STATUSES)}'
                              f"{did_you_mean(status, CUSTOMER_STATUSES)}")
    with db.write_session() as s:
        c = load_customer(s, customer_id, lock=True)
        audit.log(s, actor, "customer.status", "customer", c.id, status=status, previous=c.status)
        c.status = status
        return customer_view(c, s.get(Plan, c.plan_id))
