"""billing: metering, plans, keys, invoices, wallet, revenue — nodes H, I and J of the design.

    plans, pricing, money   plan files (strict), prices on exact Decimals, rounding once per line
    accounts, keys          plan versions, resellers, customers; API keys (hash + prefix only)
    usage, committer        the append-only usage ledger, written by group commit
    limits, billing_gate    rpm/tpm buckets (in-process or Redis) and `BillingGate` (one `BillingMeter`
                            per call), the `modelshop.gate.Gate` the platform hands to the server
    invoices, wallet        draft → finalised → paid | void; the prepaid wallet ledger
    revenue, audit          serving cost and gross margin; the admin audit log
    queries                 read-only views for the console and storefront (counts, latency)
    api                     admin and customer-self-service FastAPI routers (imported on demand)

May import: db, settings, errors, gate (the seam types), serve (its typed dependencies, for `api`),
registry and llm.upstream (the upstream models' costs, for `api`'s revenue).
Library functions take a `Database` and an
`actor` (who is doing it, for the audit log); the CLI and the HTTP API are thin layers on them.
"""

from modelshop.billing import ledger_guards as _guards  # noqa: F401  (registers the immutability guard)

__all__ = ["BillingGate"]


def __getattr__(name: str):
    # the gate is imported on first use, so `billing.tables` (migrations, `all_tables`) stays light
    if name in __all__:
        from modelshop.billing import billing_gate as gate

        return getattr(gate, name)
    raise AttributeError(f"module 'modelshop.billing' has no attribute {name!r}")
