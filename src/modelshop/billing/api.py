"""HTTP routers over the billing library: `admin_router` (/admin/...) and `customer_router` (/v1/account/...).

The server mounts both with `app.include_router(...)`; every route authenticates through the
server's gate (through `serve.deps`). Admin routes need an admin principal (the
environment's admin key or a database admin key); self-service routes need a customer key and
only ever pass that key's own customer id down, so nothing of another customer is reachable
(another customer's invoice or key answers 404, exactly like a missing one). Errors are raised
as `modelshop.errors` types; the server's one handler turns them into `{"error", "error_type"}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from modelshop.billing import accounts, audit, invoices, keys, revenue, usage, wallet
from modelshop.billing.plans import PlanIn, spec_of
from modelshop.gate import Principal
from modelshop.serve.deps import AdminDep, CustomerDep, DbDep, SettingsDep


def actor(principal: Principal) -> str:
    """The audit-log name of whoever acts: never the key, at most its id and display prefix."""
    if principal.kind == "admin":
        return "admin:env" if principal.key_id is None else f"admin-key:{principal.key_id}"
    return f"customer:{principal.customer_id}/key:{principal.key_id}"


Admin = AdminDep
Customer = CustomerDep
Db = DbDep


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResellerIn(Strict):
    name: str
    discount_percent: Any = None


class CustomerIn(Strict):
    name: str
    plan: str
    email: str | None = None
    reseller_id: int | None = None


class PlanChange(Strict):
    plan: str
    version: int | None = None


class StatusIn(Strict):
    status: str


class KeyIn(Strict):
    customer_id: int
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    expires: str | None = None
    name: str = ""


class AdminKeyIn(Strict):
    name: str


class RunIn(Strict):
    period: str
    customer_id: int | None = None


class VoidIn(Strict):
    reason: str


class PayIn(Strict):
    reference: str = ""


class TopupIn(Strict):
    amount: Any
    note: str = ""


admin_router = APIRouter(prefix="/admin", tags=["billing admin"])
customer_router = APIRouter(prefix="/v1/account", tags=["account"])


# --- admin: catalogue and customers ------------------------------------------------------------

@admin_router.get("/plans")
def list_plans(_: Admin, db: Db) -> list[dict]:
    return accounts.list_plans(db)


@admin_router.post("/plans", status_code=201)
def create_plan(who: Admin, db: Db, plan: PlanIn) -> dict:
    """A plan in the plan-file shape (JSON); a changed plan becomes a new version.

    A bad plan answers 422 with the one line the CLI prints for the same file (PlanIn raises it)."""
    return accounts.create_plan(db, spec_of(plan), actor=actor(who))


@admin_router.get("/resellers")
def list_resellers(_: Admin, db: Db) -> list[dict]:
    return accounts.list_resellers(db)


@admin_router.post("/resellers", status_code=201)
def create_reseller(who: Admin, db: Db, body: ResellerIn, settings: SettingsDep) -> dict:
    percent = body.discount_percent if body.discount_percent is not None \
        else settings.reseller_default_discount_percent
    return accounts.create_reseller(db, body.name, percent, actor=actor(who))


@admin_router.get("/customers")
def list_customers(_: Admin, db: Db) -> list[dict]:
    return accounts.list_customers(db)


@admin_router.post("/customers", status_code=201)
def create_customer(who: Admin, db: Db, body: CustomerIn) -> dict:
    return accounts.create_customer(db, body.name, body.plan, email=body.email, reseller_id=body.reseller_id,
                                    actor=actor(who))


@admin_router.get("/customers/{customer_id}")
def get_customer(_: Admin, db: Db, customer_id: int) -> dict:
    return accounts.get_customer(db, customer_id)


@admin_router.post("/customers/{customer_id}/plan")
def change_plan(who: Admin, db: Db, customer_id: int, body: PlanChange) -> dict:
    return accounts.change_plan(db, customer_id, body.plan, version=body.version, actor=actor(who))


@admin_router.post("/customers/{customer_id}/status")
def set_status(who: Admin, db: Db, customer_id: int, body: StatusIn) -> dict:
    return accounts.set_status(db, customer_id, body.status, actor=actor(who))


# --- admin: keys -----------------------------------------------------------------------------------

@admin_router.get("/keys")
def list_keys(_: Admin, db: Db, customer_id: int | None = None) -> list[dict]:
    return keys.list_keys(db, customer_id)


@admin_router.post("/keys", status_code=201)
def create_key(who: Admin, db: Db, body: KeyIn) -> dict:
    """A customer key; the `key` field of the answer is the only time it is shown."""
    return keys.create_key(db, body.customer_id, models=body.models, rpm=body.rpm, tpm=body.tpm,
                           expires=body.expires, name=body.name, actor=actor(who))


@admin_router.post("/admin-keys", status_code=201)
def create_admin_key(who: Admin, db: Db, body: AdminKeyIn) -> dict:
    return keys.create_admin_key(db, name=body.name, actor=actor(who))


@admin_router.post("/keys/{key_id}/revoke")
def revoke_key(who: Admin, db: Db, key_id: int) -> dict:
    return keys.revoke_key(db, key_id, actor=actor(who))


@admin_router.post("/keys/{key_id}/rotate")
def rotate_key(who: Admin, db: Db, key_id: int) -> dict:
    return keys.rotate_key(db, key_id, actor=actor(who))


# --- admin: usage, invoices, revenue, wallet, audit ------------------------------------------------

@admin_router.get("/usage")
def get_usage(_: Admin, db: Db, customer_id: int | None = None, period: str | None = None) -> dict:
    return usage.usage_summary(db, customer_id=customer_id, period=period)


@admin_router.post("/invoices/run")
def run_invoices(who: Admin, db: Db, body: RunIn) -> dict:
    return invoices.run_invoices(db, body.period, customer_id=body.customer_id, actor=actor(who))


@admin_router.get("/invoices")
def list_invoices(_: Admin, db: Db, customer_id: int | None = None, period: str | None = None,
                  status: str | None = None) -> list[dict]:
    return invoices.list_invoices(db, customer_id=customer_id, period=period, status=status)


@admin_router.get("/invoices/{invoice_id}")
def get_invoice(_: Admin, db: Db, invoice_id: int) -> dict:
    return invoices.get_invoice(db, invoice_id)


@admin_router.post("/invoices/{invoice_id}/finalize")
def finalize_invoice(who: Admin, db: Db, invoice_id: int) -> dict:
    return invoices.finalize(db, invoice_id, actor=actor(who))


@admin_router.post("/invoices/{invoice_id}/void")
def void_invoice(who: Admin, db: Db, invoice_id: int, body: VoidIn) -> dict:
    return invoices.void(db, invoice_id, reason=body.reason, actor=actor(who))


@admin_router.post("/invoices/{invoice_id}/pay")
def pay_invoice(who: Admin, db: Db, invoice_id: int, body: PayIn | None = None) -> dict:
    return invoices.pay(db, invoice_id, actor=actor(who), reference=body.reference if body else "")


@admin_router.get("/revenue")
def get_revenue(_: Admin, db: Db, period: str, settings: SettingsDep) -> dict:
    """Revenue, upstream cost (the registered upstream models' prices), serving cost and margin; `warnings`."""
    from modelshop.llm.upstream import upstream_costs
    from modelshop.registry import Registry

    return revenue.revenue(db, period, settings, upstream_rates=upstream_costs(Registry.from_settings(settings)))


@admin_router.get("/wallet/{customer_id}")
def get_wallet(_: Admin, db: Db, customer_id: int) -> dict:
    return wallet.wallet(db, customer_id)


@admin_router.post("/wallet/{customer_id}/topup")
def topup_wallet(who: Admin, db: Db, customer_id: int, body: TopupIn) -> dict:
    return wallet.topup(db, customer_id, body.amount, actor=actor(who), note=body.note)


@admin_router.get("/audit")
def get_audit(_: Admin, db: Db, entity: str | None = None, entity_id: str | None = None,
              limit: int = 100) -> list[dict]:
    return audit.entries(db, entity=entity, entity_id=entity_id, limit=min(max(limit, 1), 1000))


# --- customer self-service: only the caller's own customer id ever reaches the library -------------

@customer_router.get("")
def me(who: Customer, db: Db) -> dict:
    return accounts.get_customer(db, who.customer_id)


@customer_router.get("/usage")
def my_usage(who: Customer, db: Db, period: str | None = None) -> dict:
    return usage.usage_summary(db, customer_id=who.customer_id, period=period)


@customer_router.get("/invoices")
def my_invoices(who: Customer, db: Db, period: str | None = None) -> list[dict]:
    return invoices.list_invoices(db, customer_id=who.customer_id, period=period)


@customer_router.get("/invoices/{invoice_id}")
def my_invoice(who: Customer, db: Db, invoice_id: int) -> dict:
    return invoices.get_invoice(db, invoice_id, customer_id=who.customer_id)


@customer_router.get("/keys")
def my_keys(who: Customer, db: Db) -> list[dict]:
    return keys.list_keys(db, who.customer_id)


@customer_router.post("/keys/{key_id}/rotate")
def rotate_my_key(who: Customer, db: Db, key_id: int) -> dict:
    """Replace one of your keys: the old one stops working now; the new `key` is shown this once."""
    return keys.rotate_key(db, key_id, actor=actor(who), customer_id=who.customer_id)


@customer_router.post("/keys/{key_id}/revoke")
def revoke_my_key(who: Customer, db: Db, key_id: int) -> dict:
    return keys.revoke_key(db, key_id, actor=actor(who), customer_id=who.customer_id)


@customer_router.get("/wallet")
def my_wallet(who: Customer, db: Db) -> dict:
    return wallet.wallet(db, who.customer_id)
routers = [admin_router, customer_router]  # mounted by modelshop.platform.build_app
