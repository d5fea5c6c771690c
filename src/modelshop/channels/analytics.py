"""Per-channel analytics in SQL: the funnel, revenue and margin, CAC, LTV, ROI, ROAS, cohorts.

Every figure is an aggregate the database computes (GROUP BY channel); Python only divides the
few numbers per channel that come back. The number of statements is fixed, whatever the number
of customers or usage events. Definitions, for a month M and a channel:

    visits        distinct visitors with a touch of the channel in M (direct: visitors in M with no touch)
    signups       customers bound to the channel created in M; of those, how many by now have a
                  key, made a first call, paid a first invoice (the funnel)
    paying        customers of the channel with a non-void invoice for M of more than zero
    new_paying    of those, customers whose first such invoice is M's
    revenue       invoiced for M, before prepaid credits (as billing's revenue report): request and
                  token charges alike, less a reseller's wholesale discount
    serving_cost  compute time and tokens of the channel's calls in M at `serving_cost_*` rates
    upstream_cost what the providers of resold models charge for the input and output tokens of the
                  channel's calls in M (`upstream_rates`, as billing's revenue report; none given: 0)
    gross_margin  revenue − serving_cost − upstream_cost
    cost          the channel's costs entered for M plus its commissions for M's invoices
    cac           cost ÷ new_paying            arpa     revenue ÷ paying
    churn         customers paying in a month and not in the next, over the 3 months to M
                  (at least `channels_churn_floor`)
    ltv           arpa × margin ÷ churn        payback  cac ÷ (arpa × margin) months
    roi           (revenue − serving_cost − cost) ÷ cost     roas   revenue ÷ ad spend
Only amounts in `channels_currency` are counted.
"""

from __future__ import annotations

import datetime as dt
import io
from collections import defaultdict
from decimal import Decimal

from sqlalchemy import case, distinct, exists, func, select
from sqlalchemy.orm import Session

from modelshop.billing.money import check_currency, fmt, from_minor, to_minor
from modelshop.billing.periods import parse_period
from modelshop.billing.revenue import UpstreamRates, serving_cost, upstream_cost
from modelshop.billing.tables import ApiKey, Customer, Invoice, UsageCounter, UsageEvent
from modelshop.channels import csvsafe
from modelshop.channels.tables import Attribution, Channel, Commission, Cost, Partner, Touch, Visit
from modelshop.db import Database
from modelshop.errors import ValidationError
from modelshop.settings import Settings

CHURN_MONTHS = 3
RATIO = Decimal("0.01")
REPORT_COLUMNS = ("code", "name", "kind", "partner", "visits", "signups", "keys", "first_calls", "first_paid",
                  "paying", "new_paying", "revenue", "serving_cost", "upstream_cost", "gross_margin", "margin_percent",
                  "ad_spend", "marketing_cost", "commissions", "cost", "cac", "arpa", "churn", "ltv", "ltv_cac",
                  "payback_months", "roi", "roas", "currency")


def shift(period: str, months: int) -> str:
    start, _, kind = parse_period(period)
    if kind != "month":
        raise ValidationError(f'period: "{period}" must be YYYY-MM for a channel report')
    index = start.year * 12 + start.month - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_of(s: Session, column):
    """'YYYY-MM' of a UTC timestamp column, in SQL."""
    if s.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)


def _net():
    return Invoice.subtotal_minor - Invoice.discount_minor


def _by_channel(s: Session, q) -> dict[int, tuple]:
    return {row[0]: tuple(int(v or 0) for v in row[1:]) for row in s.execute(q)}


def _funnel(s: Session, start: dt.datetime, end: dt.datetime) -> dict[int, tuple]:
    has_key = exists().where(ApiKey.customer_id == Customer.id)
    called = exists().where(UsageCounter.customer_id == Customer.id, UsageCounter.requests > 0)
    paid = exists().where(Invoice.customer_id == Customer.id, Invoice.paid_at.is_not(None), Invoice.status != "void")
    flag = lambda cond: func.sum(case((cond, 1), else_=0))  # noqa: E731
    return _by_channel(s, select(Attribution.channel_id, func.count(), flag(has_key), flag(called), flag(paid))
                       .join(Customer, Customer.id == Attribution.customer_id)
                       .where(Customer.created_at >= start, Customer.created_at < end)
                       .group_by(Attribution.channel_id))


def _churn(s: Session, period: str, currency: str) -> dict[int, tuple]:
    """(paying in a month, of whom still paying the next month) summed over the months to `period`.

    One pass over the invoices: a 0/1 flag per customer and month, then base = Σ flag(m) and
    retained = Σ flag(m) × flag(m + 1) per channel.
    """
    months = [shift(period, -i) for i in range(CHURN_MONTHS, -1, -1)]
    flags = select(Invoice.customer_id, *(func.max(case((Invoice.period == m, 1), else_=0)).label(f"m{i}")
                                          for i, m in enumerate(months))) \
        .where(Invoice.period.in_(months), Invoice.status != "void", Invoice.currency == currency, _net() > 0) \
        .group_by(Invoice.customer_id).subquery()
    cols = [flags.c[f"m{i}"] for i in range(len(months))]
    base = sum(cols[:-1][1:], cols[0])
    kept = sum((a * b for a, b in zip(cols[1:-1], cols[2:], strict=True)), cols[0] * cols[1])
    return _by_channel(s, select(Attribution.channel_id, func.sum(base), func.sum(kept))
                       .join(flags, flags.c.customer_id == Attribution.customer_id)
                       .group_by(Attribution.channel_id))


def _costs(s: Session, settings: Settings, rates: UpstreamRates, start: dt.datetime,
           end: dt.datetime) -> dict[int, tuple[int, int]]:
    """Per channel: (serving cost, upstream cost) of its customers' calls in [start, end), each rounded once."""
    # summed per customer and model first, so the join touches one row per customer, not per call
    per_customer = (select(UsageEvent.customer_id, UsageEvent.model, func.sum(UsageEvent.compute_us).label("us"),
                           func.sum(UsageEvent.tokens).label("tokens"),
                           func.sum(UsageEvent.input_tokens).label("input"),
                           func.sum(UsageEvent.output_tokens).label("output"))
                    .where(UsageEvent.occurred_at >= start, UsageEvent.occurred_at < end)
                    .group_by(UsageEvent.customer_id, UsageEvent.model).subquery())
    rows = s.execute(select(Attribution.channel_id, per_customer.c.model, func.sum(per_customer.c.us),
                            func.sum(per_customer.c.tokens), func.sum(per_customer.c.input),
                            func.sum(per_customer.c.output))
                     .join(per_customer, per_customer.c.customer_id == Attribution.customer_id)
                     .group_by(Attribution.channel_id, per_customer.c.model))
    serving: dict[int, Decimal] = defaultdict(Decimal)
    upstream: dict[int, Decimal] = defaultdict(Decimal)
    for channel_id, model, us, tokens, inp, out in rows:  # one row per channel and model
        serving[channel_id] += serving_cost(settings, model, int(us or 0), int(tokens or 0))
        upstream[channel_id] += upstream_cost(rates, model, int(inp or 0), int(out or 0))
    cur = settings.serving_cost_currency
    return {c: (to_minor(serving[c], cur), to_minor(upstream[c], cur)) for c in serving}


def _ratio(a, b, places: Decimal = RATIO) -> str | None:
    if a is None or b is None or b == 0:
        return None
    return str((Decimal(a) / Decimal(b)).quantize(places))


def report(db: Database, settings: Settings, period: str, *, upstream_rates: UpstreamRates | None = None) -> list[dict]:
    """One row per channel for the month `period` (YYYY-MM); see the module docstring. `upstream_rates`:
    model → (input, output) cost per million tokens of the resold models (`llm.upstream.upstream_costs`)."""
    start, end, _ = parse_period(shift(period, 0))
    cur = check_currency(settings.channels_currency, "MODELSHOP_CHANNELS_CURRENCY")
    with db.session() as s:
        channels = s.execute(select(Channel, Partner.name).outerjoin(Partner, Partner.id == Channel.partner_id)
                             .order_by(Channel.id)).all()
        visits = _by_channel(s, select(Touch.channel_id, func.count(distinct(Touch.visitor_id)))
                             .where(Touch.occurred_at >= start, Touch.occurred_at < end).group_by(Touch.channel_id))
        direct_visits = int(s.scalar(select(func.count(distinct(Visit.visitor_id)))
                                     .where(Visit.occurred_at >= start, Visit.occurred_at < end,
                                            ~exists().where(Touch.visitor_id == Visit.visitor_id))) or 0)
        funnel = _funnel(s, start, end)
        revenue = _by_channel(s, select(Attribution.channel_id, func.sum(_net()),
                                        func.count(distinct(Invoice.customer_id)))
                              .join(Attribution, Attribution.customer_id == Invoice.customer_id)
                              .where(Invoice.period == period, Invoice.status != "void", Invoice.currency == cur,
                                     _net() > 0).group_by(Attribution.channel_id))
        first = (select(Invoice.customer_id, func.min(Invoice.period).label("first"))
                 .where(Invoice.status != "void", Invoice.currency == cur, _net() > 0)
                 .group_by(Invoice.customer_id).subquery())
        new_paying = _by_channel(s, select(Attribution.channel_id, func.count())
                                 .join(first, first.c.customer_id == Attribution.customer_id)
                                 .where(first.c.first == period).group_by(Attribution.channel_id))
        churn = _churn(s, period, cur)
        costs: dict[int, dict[str, int]] = defaultdict(dict)
        for channel_id, kind, amount in s.execute(select(Cost.channel_id, Cost.kind, func.sum(Cost.amount_minor))
                                                  .where(Cost.month == period, Cost.currency == cur)
                                                  .group_by(Cost.channel_id, Cost.kind)):
            costs[channel_id][kind] = int(amount or 0)
        commissions = _by_channel(s, select(Attribution.channel_id, func.sum(Commission.amount_minor))
                                  .join(Attribution, Attribution.customer_id == Commission.customer_id)
                                  .where(Commission.period == period, Commission.currency == cur)
                                  .group_by(Attribution.channel_id))
        costs_of_calls = _costs(s, settings, upstream_rates or {}, start, end) \
            if settings.serving_cost_currency == cur else None
    rows = []
    for channel, partner in channels:
        signups, keys, calls, paid = funnel.get(channel.id, (0, 0, 0, 0))
        rev, paying = revenue.get(channel.id, (0, 0))
        base, retained = churn.get(channel.id, (0, 0))
        marketing = sum(costs[channel.id].values()) if channel.id in costs else 0
        commission = commissions.get(channel.id, (0,))[0]
        rows.append(_figures(channel, partner, cur, settings, {
            "visits": direct_visits if channel.code == "direct" else visits.get(channel.id, (0,))[0],
            "signups": signups, "keys": keys, "first_calls": calls, "first_paid": paid, "paying": paying,
            "new_paying": new_paying.get(channel.id, (0,))[0], "revenue": rev,
            "serving_cost": None if costs_of_calls is None else costs_of_calls.get(channel.id, (0, 0))[0],
            "upstream_cost": None if costs_of_calls is None else costs_of_calls.get(channel.id, (0, 0))[1],
            "ad_spend": costs.get(channel.id, {}).get("ad_spend", 0), "marketing": marketing,
            "commissions": commission, "churn_base": base, "retained": retained}))
    return rows


def _figures(channel: Channel, partner: str | None, cur: str, settings: Settings, n: dict) -> dict:
    money = lambda minor: None if minor is None else fmt(minor, cur)  # noqa: E731
    revenue, serving, upstream = n["revenue"], n["serving_cost"], n["upstream_cost"]
    margin = None if serving is None else revenue - serving - upstream
    margin_rate = None if margin is None or not revenue else Decimal(margin) / revenue
    cost = n["marketing"] + n["commissions"]
    cac = from_minor(cost, cur) / n["new_paying"] if n["new_paying"] else None
    arpa = from_minor(revenue, cur) / n["paying"] if n["paying"] else None
    observed = Decimal(n["churn_base"] - n["retained"]) / n["churn_base"] if n["churn_base"] else None
    churn = max(observed if observed is not None else Decimal(0), settings.channels_churn_floor)
    ltv = arpa * margin_rate / churn if arpa is not None and margin_rate is not None else None
    per_month = arpa * margin_rate if arpa is not None and margin_rate is not None else None
    cents = Decimal(1).scaleb(-2)
    return {"code": channel.code, "name": channel.name, "kind": channel.kind, "partner": partner,
            "visits": n["visits"], "signups": n["signups"], "keys": n["keys"], "first_calls": n["first_calls"],
            "first_paid": n["first_paid"], "paying": n["paying"], "new_paying": n["new_paying"],
            "revenue": money(revenue), "serving_cost": money(serving), "upstream_cost": money(upstream),
            "gross_margin": money(margin),
            "margin_percent": None if margin_rate is None else str((margin_rate * 100).quantize(Decimal("0.1"))),
            "ad_spend": money(n["ad_spend"]), "marketing_cost": money(n["marketing"]),
            "commissions": money(n["commissions"]), "cost": money(cost),
            "cac": None if cac is None else str(cac.quantize(cents)),
            "arpa": None if arpa is None else str(arpa.quantize(cents)),
            "churn": str(churn.quantize(Decimal("0.0001"))) if n["churn_base"] or n["paying"] else None,
            "ltv": None if ltv is None else str(ltv.quantize(cents)),
            "ltv_cac": _ratio(ltv, cac) if cac else None,
            "payback_months": _ratio(cac, per_month, Decimal("0.1")) if cac is not None and per_month else None,
            "roi": _ratio(margin - cost, cost) if margin is not None and cost else None,
            "roas": _ratio(revenue, n["ad_spend"]) if n["ad_spend"] else None,
            "currency": cur}


def cohorts(db: Database, period: str, *, months: int = 12, channel_id: int | None = None) -> dict:
    """Retention by signup month: of the customers who signed up in month c, the share active
    (at least one call) in month c + k, for the `months` signup months up to `period`."""
    first = shift(period, -(months - 1))
    start, _, _ = parse_period(first)
    _, end, _ = parse_period(period)
    with db.session() as s:
        cohort = month_of(s, Customer.created_at).label("cohort")
        base = select(Customer.id.label("customer_id"), cohort).join(
            Attribution, Attribution.customer_id == Customer.id).where(
            Customer.created_at >= start, Customer.created_at < end)
        if channel_id is not None:
            base = base.where(Attribution.channel_id == channel_id)
        base = base.subquery()
        sizes = dict(s.execute(select(base.c.cohort, func.count()).group_by(base.c.cohort)).all())
        cells = s.execute(select(base.c.cohort, UsageCounter.month, func.count())
                          .join(UsageCounter, UsageCounter.customer_id == base.c.customer_id)
                          .where(UsageCounter.requests > 0, UsageCounter.month >= first, UsageCounter.month <= period)
                          .group_by(base.c.cohort, UsageCounter.month)).all()
    labels = [shift(first, i) for i in range(months)]
    index = {m: i for i, m in enumerate(labels)}
    active = {(c, m): int(n) for c, m, n in cells}
    rows = []
    for c in labels:
        size = int(sizes.get(c, 0))
        counts = [active.get((c, labels[j]), 0) for j in range(index[c], months)]
        rows.append({"cohort": c, "customers": size, "active": counts,
                     "retention": [str((Decimal(x) / size).quantize(Decimal("0.001"))) if size else None
                                   for x in counts]})
    return {"period": period, "months": months, "channel_id": channel_id, "cohorts": rows}


def monthly(db: Database, period: str, *, months: int = 12, currency: str = "USD") -> list[dict]:
    """Signups, requests and invoiced revenue per month, for the console's charts over time."""
    first = shift(period, -(months - 1))
    start, _, _ = parse_period(first)
    _, end, _ = parse_period(period)
    with db.session() as s:
        created = month_of(s, Customer.created_at)
        signups = dict(s.execute(select(created, func.count()).where(
            Customer.created_at >= start, Customer.created_at < end).group_by(created)).all())
        requests = dict(s.execute(select(UsageCounter.month, func.sum(UsageCounter.requests)).where(
            UsageCounter.month >= first, UsageCounter.month <= period).group_by(UsageCounter.month)).all())
        revenue = dict(s.execute(select(Invoice.period, func.sum(_net())).where(
            Invoice.period >= first, Invoice.period <= period, Invoice.status != "void",
            Invoice.currency == currency).group_by(Invoice.period)).all())
    out = []
    for i in range(months):
        m = shift(first, i)
        out.append({"month": m, "signups": int(signups.get(m, 0)), "requests": int(requests.get(m) or 0),
                    "revenue": fmt(int(revenue.get(m) or 0), currency)})
    return out


def report_csv(rows: list[dict]) -> str:
    """The channel report as CSV, one line per channel, the columns of `REPORT_COLUMNS`."""
    out = io.StringIO()
    w = csvsafe.DictWriter(out, fieldnames=REPORT_COLUMNS, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows([{k: ("" if v is None else v) for k, v in r.items()} for r in rows])
    return out.getvalue()
