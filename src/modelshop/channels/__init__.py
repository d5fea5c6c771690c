"""channels: market promotion — node K of the design (the storefront and console are `modelshop.web`).

    channels      channels (direct, reseller, marketplace, affiliate, campaign), tracking links, costs
    attribution   visits and touches of first-party visitor ids; binding a customer to a channel
                  (first or last touch in a window), changed only by an audited admin action
    partners      partner accounts and their hashed keys; everything a partner may see, scoped
    commissions   rules (percentage for N months or forever, tiers by volume, bounty), the ledger
                  (pending → approved → paid, clawback by negative entries) and payout statements
    analytics     the per-channel report (funnel, revenue, margin, CAC, LTV, ROI, ROAS) and cohorts, in SQL
    queries       the console's reads that join channel and billing tables (`web` holds no SQL)
    api           admin (`/admin/channels/...`) and partner (`/v1/partner/...`) routers

May import: db, settings, errors, gate, billing (its tables and public functions), serve (its typed
dependencies, for `api`).
Library functions take a `Database` and, when they change something, an `actor` for the audit log
(billing's `audit_log`, where every admin action of the platform is recorded).
"""

from modelshop.channels import commission_guards as _guards  # noqa: F401  (registers the ledger guard)
