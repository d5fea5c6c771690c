"""Revenue, serving cost and gross margin per model, customer and period.

Revenue is what a period's (non-void) invoices bill before prepaid credits: subtotal less
discounts. Each invoice is spread over the models the customer called: a usage line by the
models' share of its metric, the base fee and discounts by their share of requests, in integer
minor units that add up exactly. Serving cost is compute time and tokens (summed in SQL) times
the per-model rates of `Settings.serving_cost_*`, rounded once per customer and model.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import select

from modelshop.billing.money import CONTEXT, allocate, fmt, to_minor
from modelshop.billing.periods import parse_period
from modelshop.billing.tables import Customer, Invoice, InvoiceLine
from modelshop.billing.usage import usage_by_model
from modelshop.db import Database
from modelshop.settings import Settings

NO_USAGE = "(no usage)"
MILLION, THOUSAND = Decimal(1_000_000), Decimal(1000)


def rate(rates: dict[str, Decimal], model: str) -> Decimal:
    """The rate of NAME:VERSION, else of NAME, else the "*" default, else zero."""
    for key in (model, model.partition(":")[0], "*"):
        if key in rates:
            return Decimal(rates[key])
    return Decimal(0)


def serving_cost(settings: Settings, model: str, compute_us: int, tokens: int) -> Decimal:
    """Exact cost of serving this much of `model`, in `settings.serving_cost_currency`."""
    per_second = rate(settings.serving_cost_per_compute_second, model)
    per_1k = rate(settings.serving_cost_per_1k_tokens, model)
    return CONTEXT.add(CONTEXT.multiply(per_second, Decimal(compute_us) / MILLION),
                       CONTEXT.multiply(per_1k, Decimal(tokens) / THOUSAND))


def _margin(revenue: int, cost: int | None, currency: str) -> dict:
    out = {"revenue": fmt(revenue, currency), "serving_cost": None, "margin": None, "margin_percent": None}
    if cost is not None:
        out.update(serving_cost=fmt(cost, currency), margin=fmt(revenue - cost, currency),
                   margin_percent=str((Decimal(revenue - cost) * 100 / revenue).quantize(Decimal("0.1")))
                   if revenue else None)
    return out


def revenue(db: Database, period: str, settings: Settings) -> dict:
    """Revenue, serving cost and margin of a period, by model and by customer (per currency)."""
    start, end, _ = parse_period(period)
    cost_currency = settings.serving_cost_currency
    with db.session() as s:
        invoices = s.execute(select(Invoice, Customer.name).join(Customer, Invoice.customer_id == Customer.id)
                             .where(Invoice.period == period, Invoice.status != "void")).all()
        lines: dict[int, list[InvoiceLine]] = defaultdict(list)
        if invoices:
            for ln in s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id.in_([i.id for i, _ in invoices]))):
                lines[ln.invoice_id].append(ln)
        usage: dict[int, list[tuple]] = defaultdict(list)
        for c, model, req, tok, ch, us in usage_by_model(s, start, end):
            usage[c].append((model, {"requests": req, "tokens": tok, "characters": ch}, us))
    # cells keyed (customer_id, model): revenue and cost in minor units of the invoice currency
    cells: dict[tuple[int, str], dict] = {}
    statuses: dict[str, int] = defaultdict(int)
    for inv, name in invoices:
        statuses[inv.status] += 1
        rows = usage.get(inv.customer_id) or [(NO_USAGE, {"requests": 0, "tokens": 0, "characters": 0}, 0)]
        share = [0] * len(rows)
        for ln in lines[inv.id]:
            metric = ln.metric if ln.kind == "usage" else "requests"
            for i, part in enumerate(allocate(ln.amount_minor, [r[1][metric] for r in rows])):
                share[i] += part
        for (model, units, us), rev in zip(rows, share, strict=True):
            cost = None
            if inv.currency == cost_currency:
                cost = to_minor(serving_cost(settings, model, us, units["tokens"]), cost_currency)
            cells[(inv.customer_id, model)] = {"customer": name, "currency": inv.currency, "revenue": rev,
                                               "cost": cost, "requests": units["requests"],
                                               "tokens": units["tokens"], "compute_us": us}
    return {"period": period, "cost_currency": cost_currency, "invoices": dict(statuses),
            "by_model": _rollup(cells, lambda k: k[1], "model"),
            "by_customer": _rollup(cells, lambda k: k[0], "customer_id"),
            "totals": _rollup(cells, lambda k: "all", None)}


def _rollup(cells: dict, key, label: str | None) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for k, cell in cells.items():
        g = groups.setdefault((key(k), cell["currency"]), {"revenue": 0, "cost": 0, "requests": 0, "tokens": 0,
                                                           "compute_us": 0, "customer": cell["customer"]})
        g["revenue"] += cell["revenue"]
        g["cost"] = None if g["cost"] is None or cell["cost"] is None else g["cost"] + cell["cost"]
        for f in ("requests", "tokens", "compute_us"):
            g[f] += cell[f]
    out = []
    for (k, currency), g in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        row = {label: k} if label else {}
        if label == "customer_id":
            row["customer"] = g["customer"]
        row.update(currency=currency, **_margin(g["revenue"], g["cost"], currency), requests=g["requests"],
                   tokens=g["tokens"], compute_seconds=str(Decimal(g["compute_us"]) / MILLION))
        out.append(row)
    return out
