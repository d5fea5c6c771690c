"""web: the server-rendered storefront (public) and console (admin; a scoped partner view).

    storefront one page per production model: card and figures, data profile, measured latency,
              a live playground and the support bot's chat widget (the only JavaScript), pricing,
              signup with referral
    console   models, customers and keys, usage and revenue over time, invoices, channels with
              funnel, cohorts and CAC/LTV/ROI, partners and commissions; admin-only but for the
              partner's own page and payout statements
    sessions  console logins kept on the server (table `web_sessions`, in `tables`): the cookie holds
              a random id; logout, expiry or the key's revocation ends it; a CSRF token per session
    card      what the public may see of a model card and its figures (no server file paths)
    chat      the storefront's chat widget routes (the storefront bot), under their own limits
    visitors  signed visitor ids (a forged or dropped cookie gets no fresh budget), page visits
    throttle  per-visitor and per-address limits (bounded in-process buckets, or Redis)
    signing   HMAC signatures with the server secret (MODELSHOP_SECRET_KEY or home/secret_key)
    labels    the console's labelling queue and dataset versions (the feedback loop)
    tickets   the console's support desk: the bots' hand-offs, answered by a person
    charts    matplotlib figures rendered to inline SVG on the server (no CDN, no build step)
    i18n      English and Chinese strings; `?lang=` switches and a cookie remembers
    deps      the server's database, settings and service; forms, cookies, CSRF tokens

`routers` are mounted by the composition root (`modelshop.platform.build_app`). Pages call the
query functions of billing and channels; the only SQL here is on web's own table (sessions).
May import: db, settings, errors, gate, billing, channels, apps, registry, serve.
"""

from fastapi import APIRouter

from modelshop.web.console import router as console_router
from modelshop.web.labels import router as labels_router
from modelshop.web.storefront import router as storefront_router
from modelshop.web.tickets import router as tickets_router

router = APIRouter()
router.include_router(storefront_router)
router.include_router(console_router)
router.include_router(labels_router)
router.include_router(tickets_router)

routers = [storefront_router, console_router, labels_router, tickets_router]  # mounted by modelshop.platform

__all__ = ["console_router", "labels_router", "router", "routers", "storefront_router", "tickets_router"]
