"""Revenue, upstream cost, serving cost and gross margin per model, customer and period.

Revenue is what a period's (non-void) invoices bill before prepaid credits: subtotal less
discounts. Each invoice is spread over the models the customer called: a usage line over the
models it priced (its `models`, every model when it names none) by their share of its metric
(so a generative model's input and output token charges go to it alone), the base fee and
discounts by their share of requests, in integer minor units that add up exactly.

Costs, per customer and model, each rounded once, in `Settings.serving_cost_currency`:
    serving cost    compute time and tokens (summed in SQL) times the per-model rates of
                    `Settings.serving_cost_*`
    upstream cost   what an upstream provider charges for a resold model's input and output
                    tokens: per million, from `upstream_rates` (model → (input, output), what
                    `llm.upstream.upstream_costs` reads from the registry); none given, every model's is 0
    margin          revenue − serving cost − upstream cost

Each row also says how many of its tokens were estimated (counted locally: the upstream that served
the call sent no usage). `warnings` names every model sold below its cost: its margin over the
period is negative, or it is for some customers (a plan that prices it too low).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import select

from modelshop.billing.money import CONTEXT, allocate, fmt, to_minor
from modelshop.billing.periods import parse_period
from modelshop.billing.tables import Customer, Invoice, InvoiceLine
from modelshop.billing.usage import METRIC_COLUMNS, model_name, usage_by_model
from modelshop.db import Database
from modelshop.settings import Settings

NO_USAGE = "(no usage)"
MILLION, THOUSAND = Decimal(1_000_000), Decimal(1000)
MEASURED = ("requests", "tokens", "input_tokens", "output_tokens", "compute_us")
ESTIMATED = ("tokens", "input_tokens", "output_tokens")    # of those, the ones whose estimated part a row shows
SUMMED = (*MEASURED, *(f"estimated_{m}" for m in ESTIMATED))   # figures each row adds up
UpstreamRates = Mapping[str, tuple[Decimal, Decimal]]   # model → (input, output) cost per million tokens


def _lookup(rates: Mapping, model: str, default):
    """The entry of NAME:VERSION, else of NAME, else the "*" default, else `default`."""
    for key in (model, model.partition(":")[0], "*"):
        if key in rates:
            return rates[key]
    return default


def rate(rates: Mapping[str, Decimal], model: str) -> Decimal:
    """The rate of NAME:VERSION, else of NAME, else the "*" default, else zero."""
    return Decimal(_lookup(rates, model, 0))


def serving_cost(settings: Settings, model: str, compute_us: int, tokens: int) -> Decimal:
    """Exact cost of serving this much of `model`, in `settings.serving_cost_currency`."""
    per_second = rate(settings.serving_cost_per_compute_second, model)
    per_1k = rate(settings.serving_cost_per_1k_tokens, model)
    return CONTEXT.add(CONTEXT.multiply(per_second, Decimal(compute_us) / MILLION),
                       CONTEXT.multiply(per_1k, Decimal(tokens) / THOUSAND))


def upstream_cost(rates: UpstreamRates, model: str, input_tokens: int, output_tokens: int) -> Decimal:
    """Exact cost an upstream provider charges for this many tokens of `model` (0 for a model of our own)."""
    per_input, per_output = _lookup(rates, model, (0, 0))
    return CONTEXT.add(CONTEXT.multiply(Decimal(per_input), Decimal(input_tokens) / MILLION),
                       CONTEXT.multiply(Decimal(per_output), Decimal(output_tokens) / MILLION))


def _margin(revenue: int, cost: int | None, upstream: int | None, currency: str) -> dict:
    out = {"revenue": fmt(revenue, currency), "upstream_cost": None, "serving_cost": None, "margin": None,
           "margin_percent": None}
    if cost is not None and upstream is not None:
        margin = revenue - cost - upstream
        out.update(upstream_cost=fmt(upstream, currency), serving_cost=fmt(cost, currency),
                   margin=fmt(margin, currency),
                   margin_percent=str((Decimal(margin) * 100 / revenue).quantize(Decimal("0.1")))
                   if revenue else None)
    return out


def _weights(line: InvoiceLine, rows: list[dict]) -> list[int]:
    """How a line's amount is spread over the customer's usage rows (one per model)."""
    if line.kind != "usage":
        return [r["requests"] for r in rows]
    mine = [line.models is None or model_name(r["model"]) in line.models for r in rows]
    weights = [r.get(line.metric, 0) if m else 0 for r, m in zip(rows, mine, strict=True)]
    if not any(weights) and any(mine):   # nothing metered (a minimum, a package): over its models alike
        weights = [int(m) for m in mine]
    return weights


def revenue(db: Database, period: str, settings: Settings, *, upstream_rates: UpstreamRates | None = None) -> dict:
    """Revenue, upstream cost, serving cost and margin of a period, by model and by customer (per
    currency), with each row's requests, tokens, input and output tokens and compute seconds."""
    start, end, _ = parse_period(period)
    cost_currency = settings.serving_cost_currency
    with db.session() as s:
        invoices = s.execute(select(Invoice, Customer.name).join(Customer, Invoice.customer_id == Customer.id)
                             .where(Invoice.period == period, Invoice.status != "void")).all()
        lines: dict[int, list[InvoiceLine]] = defaultdict(list)
        if invoices:
            for ln in s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id.in_([i.id for i, _ in invoices]))):
                lines[ln.invoice_id].append(ln)
        usage: dict[int, list[dict]] = defaultdict(list)
        for row in usage_by_model(s, start, end):
            usage[row["customer_id"]].append(row)
    nothing = {"model": NO_USAGE, **dict.fromkeys((*METRIC_COLUMNS, "compute_us"), 0),
               "estimated": dict.fromkeys(METRIC_COLUMNS, 0)}
    # cells keyed (customer_id, model): revenue and costs in minor units of the invoice currency
    cells: dict[tuple[int, str], dict] = {}
    statuses: dict[str, int] = defaultdict(int)
    for inv, name in invoices:
        statuses[inv.status] += 1
        rows = usage.get(inv.customer_id) or [nothing]
        share = [0] * len(rows)
        for ln in lines[inv.id]:
            for i, part in enumerate(allocate(ln.amount_minor, _weights(ln, rows))):
                share[i] += part
        for row, rev in zip(rows, share, strict=True):
            cost = upstream = None
            if inv.currency == cost_currency:
                cost = to_minor(serving_cost(settings, row["model"], row["compute_us"], row["tokens"]), cost_currency)
                upstream = to_minor(upstream_cost(upstream_rates or {}, row["model"], row["input_tokens"],
                                                  row["output_tokens"]), cost_currency)
            cells[(inv.customer_id, row["model"])] = {"customer": name, "currency": inv.currency, "revenue": rev,
                                                      "cost": cost, "upstream": upstream, **_summed(row)}
    return {"period": period, "cost_currency": cost_currency, "invoices": dict(statuses),
            "by_model": _rollup(cells, lambda k: k[1], "model"),
            "by_customer": _rollup(cells, lambda k: k[0], "customer_id"),
            "totals": _rollup(cells, lambda k: "all", None),
            "warnings": below_cost(cells, period)}


def _summed(row: dict) -> dict[str, int]:
    """The SUMMED figures of one `usage_by_model` row."""
    return {**{f: row[f] for f in MEASURED}, **{f"estimated_{m}": row["estimated"][m] for m in ESTIMATED}}


def _loss(cell: dict) -> int | None:
    """A cell's margin in minor units; None when its costs are not known (another currency)."""
    if cell["cost"] is None or cell["upstream"] is None:
        return None
    return cell["revenue"] - cell["cost"] - cell["upstream"]


def below_cost(cells: dict, period: str) -> list[dict]:
    """One warning per model (and currency) sold below its cost: over the period (negative margin), or to
    some customers, named in `customers` (their margin on it is negative while the model's is not)."""
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = defaultdict(list)
    for (customer_id, model), cell in cells.items():
        if _loss(cell) is not None:
            groups[(model, cell["currency"])].append((customer_id, cell))
    out = []
    for (model, currency), members in sorted(groups.items()):
        losing = [(c, cell) for c, cell in members if _loss(cell) < 0]
        if not losing:
            continue
        overall = sum(_loss(cell) for _, cell in members) < 0
        counted = members if overall else losing
        rev, up, serving = (sum(cell[f] for _, cell in counted) for f in ("revenue", "upstream", "cost"))
        margin = rev - up - serving
        whom = "" if overall else f" to customer{'s' if len(losing) > 1 else ''} " + \
            ", ".join(str(c) for c, _ in sorted(losing, key=lambda x: x[0]))
        out.append({"model": model, "currency": currency, "customers": sorted(c for c, _ in losing),
                    "revenue": fmt(rev, currency), "upstream_cost": fmt(up, currency),
                    "serving_cost": fmt(serving, currency), "margin": fmt(margin, currency),
                    "message": f"{model} is sold below its cost{whom} in {period}: revenue {fmt(rev, currency)} "
                               f"{currency} against upstream cost {fmt(up, currency)} and serving cost "
                               f"{fmt(serving, currency)}, margin {fmt(margin, currency)} {currency}; raise its "
                               "price in the plans or lower its cost"})
    return out


def _rollup(cells: dict, key, label: str | None) -> list[dict]:
    groups: dict[tuple, dict] = {}
    for k, cell in cells.items():
        g = groups.setdefault((key(k), cell["currency"]), {"revenue": 0, "cost": 0, "upstream": 0,
                                                           "customer": cell["customer"], **dict.fromkeys(SUMMED, 0)})
        g["revenue"] += cell["revenue"]
        for f in ("cost", "upstream"):
            g[f] = None if g[f] is None or cell[f] is None else g[f] + cell[f]
        for f in SUMMED:
            g[f] += cell[f]
    out = []
    for (k, currency), g in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        row = {label: k} if label else {}
        if label == "customer_id":
            row["customer"] = g["customer"]
        row.update(currency=currency, **_margin(g["revenue"], g["cost"], g["upstream"], currency),
                   **{f: g[f] for f in SUMMED if f != "compute_us"},
                   compute_seconds=str(Decimal(g["compute_us"]) / MILLION))
        out.append(row)
    return out
