"""Read-only questions the console and the storefront ask of billing's tables.

`web` holds no SQL: a page asks a named question here (or in `channels.queries`, for figures that
join channel tables) and gets plain values back, so the tables can change without a page knowing.
Each function is one short read in its own session; none writes.

May import: db, billing's tables, plans, pricing, periods and usage reads.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from modelshop.billing.accounts import plan_spec
from modelshop.billing.periods import parse_period
from modelshop.billing.pricing import TOKEN_METRICS, decimal_text, per_million
from modelshop.billing.tables import ApiKey, Customer, Plan, UsageEvent
from modelshop.billing.usage import model_name, usage_by_model
from modelshop.db import Database

EVERY_MODEL = "*"   # a name no charge names (a model's starts with a letter or digit): the general charges' price


def account_counts(db: Database) -> dict[str, int]:
    """How many customers there are and how many API keys are active (admin keys included)."""
    with db.session() as s:
        return {"customers": s.scalar(select(func.count()).select_from(Customer)),
                "keys": s.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.status == "active"))}


def model_latency(db: Database, name: str, *, since: dt.datetime) -> dict:
    """The metered calls to any version of model `name` since `since`, and their mean compute time.

    Returns `{"calls": requests counted, "mean_ms": compute milliseconds per request, or None
    without calls}`. Versions are matched by the ledger's "NAME:VERSION" prefix, with `%` and `_`
    in the name taken literally.
    """
    with db.session() as s:
        us, n = s.execute(select(func.sum(UsageEvent.compute_us), func.sum(UsageEvent.requests)).where(
            UsageEvent.model.startswith(f"{name}:", autoescape=True), UsageEvent.occurred_at >= since)).one()
    n = int(n or 0)
    return {"calls": n, "mean_ms": int(us or 0) / n / 1000 if n else None}


def token_price_list(db: Database, *, codes: list[str] | None = None) -> list[dict]:
    """What each current plan charges for generative models' tokens, for the storefront's price list.

    "Current": the latest version of each plan code, only `codes` when given (the storefront passes
    `Settings.storefront_plans`). One row per plan and per model its token charges name, and one
    with `model` None ("every other model") when it has a token charge that names no model:

        {"plan": "pro", "model": "smollm2" | None, "currency": "USD",
         "input_per_million": "0.20" | None, "output_per_million": "0.60" | None}

    Prices are Decimal strings per million tokens with at least the currency's places, at the
    first billable unit's price (a graduated or volume charge's first tier, a package's price
    per unit), summing the charges that apply (`input_tokens` or `output_tokens`, and `tokens`,
    which counts both); None where that side is not charged. Plans without a token charge have
    no row. Ordered by plan code, then the plan's model-specific rows by name, then `None`.
    """
    with db.session() as s:
        latest = s.execute(select(Plan.code, func.max(Plan.version)).group_by(Plan.code)).all()
        plans = [s.scalars(select(Plan).where(Plan.code == code, Plan.version == version)).one()
                 for code, version in sorted(latest) if codes is None or code in codes]
        specs = [plan_spec(p) for p in plans]
    metrics = {m for side in TOKEN_METRICS.values() for m in side}
    out = []
    for spec in specs:
        token_charges = [c for c in spec.charges if c.metric in metrics]
        named = sorted({m for c in token_charges for m in c.models or ()})
        general = any(c.models is None for c in token_charges)
        for model in [*named, *([None] if general else [])]:
            prices = {side: per_million(spec, EVERY_MODEL if model is None else model, m)
                      for side, m in TOKEN_METRICS.items()}
            out.append({"plan": spec.code, "model": model, "currency": spec.currency,
                        **{f"{side}_per_million": None if v is None else decimal_text(v, spec.currency)
                           for side, v in prices.items()}})
    return out


def token_usage(db: Database, period: str) -> dict:
    """Generative usage of a period ("YYYY-MM" or "YYYY"): input and output tokens per model
    ("NAME:VERSION") and per customer, for the console, with the part of each that was estimated
    (counted locally: the upstream that served the call sent no usage).

        {"period", "by_model": [{"model", "calls", "input_tokens", "output_tokens",
                                 "estimated_calls", "estimated_input_tokens", "estimated_output_tokens"}],
         "by_customer": [{"customer_id", "customer", "model", <the same figures>}],
         "totals": {<the same figures>}}

    Only usage with input or output tokens counts (a classifier's calls have none); `calls` is the
    requests of those rows. By model: most output tokens first; by customer: by customer id, then model.
    """
    start, end, _ = parse_period(period)
    with db.session() as s:
        rows = [r for r in usage_by_model(s, start, end) if r["input_tokens"] or r["output_tokens"]]
        names = dict(s.execute(select(Customer.id, Customer.name).where(
            Customer.id.in_({r["customer_id"] for r in rows}))).tuples().all()) if rows else {}
    figures = [_token_figures(r) for r in rows]
    models: dict[str, dict] = {}
    for r, f in zip(rows, figures, strict=True):
        m = models.setdefault(r["model"], {"model": r["model"], **dict.fromkeys(TOKEN_FIGURES, 0)})
        for k in TOKEN_FIGURES:
            m[k] += f[k]
    by_customer = [{"customer_id": r["customer_id"], "customer": names.get(r["customer_id"]), "model": r["model"], **f}
                   for r, f in zip(rows, figures, strict=True)]
    return {"period": period,
            "by_model": sorted(models.values(), key=lambda m: (-m["output_tokens"], model_name(m["model"]),
                                                               m["model"])),
            "by_customer": by_customer,
            "totals": {k: sum(f[k] for f in figures) for k in TOKEN_FIGURES}}


TOKEN_FIGURES = ("calls", "input_tokens", "output_tokens", "estimated_calls", "estimated_input_tokens",
                 "estimated_output_tokens")


def _token_figures(row: dict) -> dict[str, int]:
    """TOKEN_FIGURES of one `usage_by_model` row (calls are its requests)."""
    est = row["estimated"]
    return {"calls": row["requests"], "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
            "estimated_calls": est["requests"], "estimated_input_tokens": est["input_tokens"],
            "estimated_output_tokens": est["output_tokens"]}
