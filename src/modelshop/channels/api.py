"""HTTP routers over the channels library: `admin_router` (/admin/channels, /admin/partners, ...) and
`partner_router` (/v1/partner/...), listed in `routers` for `serve.create_app` to mount beside billing's.

Admin routes authenticate through the server's gate exactly as billing's do (its `Admin`
dependency). Partner routes take a partner key (`ms_partner_…`, stored hashed like customer keys)
and pass only that key's partner id down to the library, whose queries filter by it: another
partner's customer, invoice or statement answers 404, exactly like a missing one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict

from modelshop.billing.api import actor
from modelshop.billing.periods import period_of
from modelshop.channels import analytics, attribution, channels, commissions, partners
from modelshop.channels.partners import PartnerCaller
from modelshop.db import utcnow
from modelshop.serve.deps import AdminDep, DbDep, SettingsDep, bearer


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Strict):
    name: str
    kind: str
    code: str | None = None
    partner_id: int | None = None


class LinkIn(Strict):
    landing: str = "/store"
    with_ref: bool = True
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None


class CostIn(Strict):
    channel: str
    month: str
    amount: Any
    kind: str = "ad_spend"
    currency: str | None = None
    note: str = ""


class RebindIn(Strict):
    channel: str
    reason: str


class PartnerIn(Strict):
    name: str
    kind: str = "affiliate"
    email: str | None = None
    reseller_discount: Any = None


class RuleIn(Strict):
    kind: str
    percent: Any = None
    tiers: Any = None
    months: int | None = None
    bounty: Any = None
    currency: str | None = None
    hold_days: int | None = None


class PayoutIn(Strict):
    month: str
    currency: str | None = None


class ResellerCustomerIn(Strict):
    name: str
    plan: str
    email: str | None = None


Admin, Db, Conf = AdminDep, DbDep, SettingsDep


async def _partner(db: DbDep, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> PartnerCaller:
    return partners.authenticate(db, credentials.credentials if credentials else None)


Partner = PartnerDep = Annotated[PartnerCaller, Depends(_partner)]


def partner_actor(who: PartnerCaller) -> str:
    return f"partner:{who.partner_id}/key:{who.principal.key_id}"


def _csv(text: str, name: str) -> PlainTextResponse:
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


admin_router = APIRouter(prefix="/admin", tags=["channels admin"])
partner_router = APIRouter(prefix="/v1/partner", tags=["partner"])


# --- admin: channels, links, costs, attribution ----------------------------------------------------

@admin_router.get("/channels")
def list_channels(_: Admin, db: Db) -> list[dict]:
    return channels.list_channels(db)


@admin_router.post("/channels", status_code=201)
def create_channel(who: Admin, db: Db, body: ChannelIn) -> dict:
    return channels.create_channel(db, body.name, body.kind, code=body.code, partner_id=body.partner_id,
                                   actor=actor(who))


@admin_router.get("/channels/links")
def list_links(_: Admin, db: Db, channel: str | None = None) -> list[dict]:
    return channels.list_links(db, channel)


@admin_router.post("/channels/{channel}/links", status_code=201)
def create_link(who: Admin, db: Db, channel: str, body: LinkIn) -> dict:
    return channels.create_link(db, channel, actor=actor(who), **body.model_dump())


@admin_router.get("/channels/costs")
def list_costs(_: Admin, db: Db, channel: str | None = None, month: str | None = None) -> list[dict]:
    return channels.list_costs(db, channel=channel, month=month)


@admin_router.post("/channels/costs")
def set_cost(who: Admin, db: Db, body: CostIn, conf: Conf) -> dict:
    return channels.set_cost(db, body.channel, body.month, body.amount, kind=body.kind,
                             currency=body.currency or conf.channels_currency, note=body.note, actor=actor(who))


@admin_router.post("/channels/costs/import")
def import_costs(who: Admin, db: Db, conf: Conf, body: Annotated[str, Body(media_type="text/csv")]) -> dict:
    """Costs as CSV: `channel,month,kind,amount,currency,note` (kind, currency, note optional)."""
    return channels.import_costs_csv(db, body, currency=conf.channels_currency, actor=actor(who))


@admin_router.get("/channels/report", response_model=None)
def get_report(_: Admin, db: Db, conf: Conf, period: str | None = None, format: str = "json"):
    from modelshop.llm.upstream import upstream_costs
    from modelshop.registry import Registry

    period = period or period_of(utcnow(), "month")
    rows = analytics.report(db, conf, period, upstream_rates=upstream_costs(Registry.from_settings(conf)))
    if format == "csv":
        return _csv(analytics.report_csv(rows), f"channels-{period}.csv")
    return rows


@admin_router.get("/channels/cohorts")
def get_cohorts(_: Admin, db: Db, period: str | None = None, channel: str | None = None, months: int = 12) -> dict:
    channel_id = None
    if channel is not None:
        with db.session() as s:
            channel_id = channels.find_channel(s, channel).id
    return analytics.cohorts(db, period or period_of(utcnow(), "month"), months=min(max(months, 1), 36),
                             channel_id=channel_id)


@admin_router.get("/customers/{customer_id}/channel")
def get_binding(_: Admin, db: Db, customer_id: int) -> dict:
    return attribution.get_attribution(db, customer_id)


@admin_router.post("/customers/{customer_id}/channel")
def rebind(who: Admin, db: Db, customer_id: int, body: RebindIn) -> dict:
    """Move a customer to another channel (audited, with the reason)."""
    return attribution.rebind(db, customer_id, body.channel, reason=body.reason, actor=actor(who))


# --- admin: partners and commissions -------------------------------------------------------------

@admin_router.get("/partners")
def list_partners(_: Admin, db: Db) -> list[dict]:
    return partners.list_partners(db)


@admin_router.post("/partners", status_code=201)
def create_partner(who: Admin, db: Db, body: PartnerIn) -> dict:
    return partners.create_partner(db, body.name, kind=body.kind, email=body.email,
                                   reseller_discount=body.reseller_discount, actor=actor(who))


@admin_router.post("/partners/{partner_id}/keys", status_code=201)
def create_partner_key(who: Admin, db: Db, partner_id: int) -> dict:
    """A partner key; the `key` field of the answer is the only time it is shown."""
    return partners.create_partner_key(db, partner_id, actor=actor(who))


@admin_router.post("/partner-keys/{key_id}/revoke")
def revoke_partner_key(who: Admin, db: Db, key_id: int) -> dict:
    return partners.revoke_partner_key(db, key_id, actor=actor(who))


@admin_router.get("/partners/{partner_id}/rules")
def list_rules(_: Admin, db: Db, partner_id: int) -> list[dict]:
    return commissions.list_rules(db, partner_id)


@admin_router.post("/partners/{partner_id}/rules", status_code=201)
def create_rule(who: Admin, db: Db, conf: Conf, partner_id: int, body: RuleIn) -> dict:
    return commissions.create_rule(db, partner_id, body.kind, percent=body.percent, tiers=body.tiers,
                                   months=body.months, bounty=body.bounty,
                                   currency=body.currency or conf.channels_currency,
                                   hold_days=conf.commission_hold_days if body.hold_days is None else body.hold_days,
                                   actor=actor(who))


@admin_router.post("/commissions/run")
def run_commissions(who: Admin, db: Db) -> dict:
    return commissions.run_commissions(db, actor=actor(who))


@admin_router.get("/commissions")
def list_commissions(_: Admin, db: Db, partner_id: int | None = None, status: str | None = None) -> dict:
    return commissions.list_commissions(db, partner_id=partner_id, status=status)


@admin_router.post("/partners/{partner_id}/payouts")
def make_payout(who: Admin, db: Db, conf: Conf, partner_id: int, body: PayoutIn) -> dict:
    return commissions.payout(db, partner_id, body.month, currency=body.currency or conf.channels_currency,
                              actor=actor(who))


@admin_router.get("/payouts/{payout_id}.csv", response_class=PlainTextResponse)
def payout_csv(_: Admin, db: Db, payout_id: int):
    st = commissions.get_statement(db, payout_id)
    return _csv(commissions.statement_csv(st), f"payout-{st['partner_id']}-{st['month']}.csv")


# --- partner: only its own ----------------------------------------------------------------------------

@partner_router.get("")
def me(who: Partner, db: Db) -> dict:
    return {**partners.get_partner(db, who.partner_id),
            "channels": channels.list_channels(db, partner_id=who.partner_id)}


@partner_router.get("/customers")
def my_customers(who: Partner, db: Db) -> list[dict]:
    return partners.customers(db, who.partner_id)


@partner_router.post("/customers", status_code=201)
def create_my_customer(who: Partner, db: Db, body: ResellerCustomerIn) -> dict:
    """Resellers only: a customer under the reseller (its wholesale discount applies); the key is shown once."""
    return partners.create_customer(db, who.partner_id, body.name, body.plan, email=body.email,
                                    actor=partner_actor(who))


@partner_router.get("/customers/{customer_id}")
def my_customer(who: Partner, db: Db, customer_id: int) -> dict:
    return partners.customer(db, who.partner_id, customer_id)


@partner_router.get("/usage")
def my_usage(who: Partner, db: Db, period: str | None = None) -> dict:
    return partners.usage(db, who.partner_id, period)


@partner_router.get("/invoices")
def my_invoices(who: Partner, db: Db, period: str | None = None) -> list[dict]:
    return partners.invoices(db, who.partner_id, period=period)


@partner_router.get("/commissions")
def my_commissions(who: Partner, db: Db) -> dict:
    return commissions.list_commissions(db, partner_id=who.partner_id)


@partner_router.get("/payouts")
def my_payouts(who: Partner, db: Db) -> list[dict]:
    return commissions.list_payouts(db, who.partner_id)


@partner_router.get("/payouts/{payout_id}.csv", response_class=PlainTextResponse)
def my_payout_csv(who: Partner, db: Db, payout_id: int):
    st = commissions.get_statement(db, payout_id, partner_id=who.partner_id)
    return _csv(commissions.statement_csv(st), f"payout-{st['month']}.csv")


@partner_router.get("/payouts/{payout_id}")
def my_payout(who: Partner, db: Db, payout_id: int) -> dict:
    return commissions.get_statement(db, payout_id, partner_id=who.partner_id)


routers = [admin_router, partner_router]  # mounted by modelshop.platform.build_app
