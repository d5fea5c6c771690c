"""The console: server-rendered pages for the operator (admin key) and a scoped view for a partner.

Login pastes a key into a form (never a URL); the key is checked once, through the server's gate
for an admin key and through `channels.partners.authenticate` for a partner key, and opens a
server-side session (`web.sessions`): the cookie holds only a random session id (HttpOnly,
SameSite=Lax, Path=/console, 12 hours, Secure outside local development: see
`deps.secure_console_cookie`). Each request checks the session and the key behind it, so logout
and key revocation end it at once. Every form that changes something carries the session's CSRF
token (the login form a token of its own, double-submitted in a short-lived cookie). Admin pages
are refused to a partner session; a partner session reaches only /console/partner and its own
payout statements. Pages call the same library functions as the CLI and the JSON API.
"""

from __future__ import annotations

import secrets
from functools import partial

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, RedirectResponse, Response

from modelshop.billing import invoices as billing_invoices
from modelshop.billing import keys as billing_keys
from modelshop.billing import queries as billing_queries
from modelshop.billing import revenue as billing_revenue
from modelshop.billing.periods import parse_period, period_of
from modelshop.channels import analytics, attribution, channels, commissions, partners
from modelshop.channels import queries as channel_queries
from modelshop.db import utcnow
from modelshop.errors import Forbidden, ModelshopError, Unauthorized
from modelshop.llm.upstream import upstream_costs
from modelshop.serve.deps import app_state
from modelshop.web import charts, sessions
from modelshop.web.deps import database, form, render, same_token, secure_console_cookie, set_cookie, settings
from modelshop.web.sessions import Login
from modelshop.web.sessions import Session as User
from modelshop.web.storefront import production, registry_of

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "ms_console"              # the session id
LOGIN_COOKIE = "ms_console_login"  # the login form's token, before there is a session
LOGIN_FORM_S = 3600                # how long a login form stays valid
PAGE = 500  # most rows a list page shows (newest first)
HOME = {"admin": "/console", "partner": "/console/partner"}


async def current(request: Request) -> User:
    """The user of the request's session cookie, checked now; Unauthorized when there is none or it ended."""
    return await run_in_threadpool(sessions.lookup, database(request), settings(request), request.cookies.get(COOKIE))


async def check_key(request: Request, key: str) -> Login:
    """A pasted key → the session it may open (admin or partner); a customer key is refused."""
    if not key:
        raise Unauthorized("paste an admin key or a partner key")
    if key.startswith(partners.PREFIX):
        caller = await run_in_threadpool(partners.authenticate, database(request), key)
        return Login("partner", key, partner_key_id=caller.principal.key_id)
    principal = await app_state(request).gate.authenticate(key)
    if principal.kind != "admin":
        raise Forbidden("the console needs an admin key or a partner key; a customer key is for the API")
    return Login("admin", key, api_key_id=principal.key_id)


def _to_login(request: Request, e: ModelshopError) -> Response:
    response = RedirectResponse(f"/console/login?why={e.error_type}", 303)
    if request.cookies.get(COOKIE):  # an ended session: the browser forgets it
        response.delete_cookie(COOKIE, path="/console", secure=secure_console_cookie(request), httponly=True,
                               samesite="lax")
    return response


async def guard(request: Request, want: str) -> User | Response:
    """The user when its session may open a `want` page (admin | partner), else where the browser goes:
    the login form without a live session, its own home for a session of the other kind."""
    try:
        user = await current(request)
    except (Unauthorized, Forbidden) as e:
        return _to_login(request, e)
    if user.kind != want:
        return RedirectResponse(HOME[user.kind], 303)
    return user


async def page(request: Request, template: str, want: str = "admin", **build) -> Response:
    """Render `template` for a logged-in user of kind `want`; the values of `build` are computed in a thread."""
    user = await guard(request, want)
    if isinstance(user, Response):
        return user
    return await show(request, user, template, **build)


async def show(request: Request, user: User, template: str, **build) -> Response:
    """Render `template` for `user` (already checked by `guard`) with the values of `build`, each made in a thread."""
    want = user.kind
    try:
        values = {k: await run_in_threadpool(fn) for k, fn in build.items()}
    except ModelshopError as e:
        return render(request, "error.html", status_code=e.status_code, message=e.message, back=HOME[want])
    return render(request, template, user=user, **values)


async def action(request: Request, fn, back: str, want: str = "admin") -> Response:
    """A form POST: check the user and the CSRF token, call `fn(fields, user)`, show its result once."""
    try:
        user = await current(request)
        fields = await form(request)
        if user.kind != want or not same_token(user.csrf, fields.get("csrf")):
            raise Forbidden("this form is stale or not yours; reload the page and try again")
        result = await run_in_threadpool(fn, fields, user)
    except Unauthorized as e:
        return _to_login(request, e)
    except ModelshopError as e:
        return render(request, "error.html", status_code=e.status_code, message=e.message, back=back)
    if isinstance(result, Response):
        return result
    response = render(request, "console_done.html", result=result, back=back)
    response.headers["Cache-Control"] = "no-store"
    return response


def _period(request: Request) -> str:
    period = request.query_params.get("period") or period_of(utcnow(), "month")
    parse_period(period)
    return period


def _csv(text: str, filename: str) -> PlainTextResponse:
    return PlainTextResponse(text, media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Cache-Control": "no-store"})


# --- login ------------------------------------------------------------------------------------------

def _login_form(request: Request, status_code: int = 200, **context) -> Response:
    """The login form with a fresh token, double-submitted: in the form and in a cookie of its own."""
    token = secrets.token_urlsafe(24)
    response = render(request, "console_login.html", status_code=status_code, login_csrf=token,
                      why=request.query_params.get("why"), **context)
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=LOGIN_FORM_S, path="/console/login",
               samesite="strict", secure=secure_console_cookie(request))
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/login")
def login_form(request: Request):
    return _login_form(request)


@router.post("/login")
async def login(request: Request):
    fields = await form(request)
    if not same_token(request.cookies.get(LOGIN_COOKIE, ""), fields.get("csrf")):
        why = ("the login form expired or was not sent from this page; log in again here"
               if request.cookies.get(LOGIN_COOKIE) or not secure_console_cookie(request)
               or request.url.scheme == "https" else
               "this console's cookies are Secure, so log in over HTTPS (or, for a local plain-HTTP setup only, "
               "set MODELSHOP_CONSOLE_COOKIE_SECURE=false)")
        return _login_form(request, status_code=403, error=why)
    try:
        checked = await check_key(request, fields.get("key", "").strip())
    except (Unauthorized, Forbidden) as e:
        return _login_form(request, status_code=e.status_code, error=e.message)
    session_id, user = await run_in_threadpool(sessions.open_session, database(request), checked)
    response = RedirectResponse(HOME[user.kind], 303)
    set_cookie(request, response, COOKIE, session_id, max_age=int(sessions.SESSION_TTL.total_seconds()),
               path="/console", samesite="lax", secure=secure_console_cookie(request))
    response.delete_cookie(LOGIN_COOKIE, path="/console/login")
    return response


@router.post("/logout")
async def logout(request: Request):
    """End the session (with its CSRF token); a session that already ended just leaves the browser."""
    session_id = request.cookies.get(COOKIE)
    try:
        user = await current(request)
    except (Unauthorized, Forbidden):
        user = None
    if user is not None:
        if not same_token(user.csrf, (await form(request)).get("csrf")):
            return render(request, "error.html", status_code=403, back=HOME[user.kind],
                          message="this form is stale or not yours; reload the page and try again")
        await run_in_threadpool(sessions.end_session, database(request), session_id)
    response = RedirectResponse("/console/login", 303)
    response.delete_cookie(COOKIE, path="/console", secure=secure_console_cookie(request), httponly=True,
                           samesite="lax")
    return response


# --- admin pages ------------------------------------------------------------------------------------

@router.get("")
async def home(request: Request):
    db, conf, period = database(request), settings(request), _period(request)

    def overview():
        months = analytics.monthly(db, period, months=12, currency=conf.channels_currency)
        counts = channel_queries.overview_counts(db)
        chart = charts.over_time([m["month"] for m in months], (f"revenue ({conf.channels_currency})",
                                 [m["revenue"] for m in months]), ("requests", [m["requests"] for m in months]))
        return {"months": months, "counts": counts, "chart": chart, "models": len(production(request))}

    return await page(request, "console_home.html", data=overview, period=lambda: period)


@router.get("/models")
async def models_page(request: Request):
    def rows():
        versions = registry_of(request).list()
        prod = [v for v in versions if v.stage == "production"]
        chart = None
        if prod:
            chart = charts.grouped([v.ref for v in prod], {
                "macro-F1": [v.metrics.get("macro_f1") for v in prod],
                "tf-idf baseline": [v.metrics.get("baseline_macro_f1") for v in prod]}, "production models")
        return {"versions": versions, "chart": chart}

    return await page(request, "console_models.html", data=rows)


@router.get("/customers")
async def customers_page(request: Request):
    db = database(request)

    return await page(request, "console_customers.html",
                      customers=lambda: channel_queries.customers_with_channel(db, limit=PAGE),
                      channels=lambda: channels.list_channels(db),
                      keys=lambda: billing_keys.list_keys(db)[-PAGE:][::-1])


@router.get("/usage")
async def usage_page(request: Request):
    """Generative models' input and output tokens of a period, per model and per customer."""
    db, period = database(request), _period(request)

    def data():
        usage = billing_queries.token_usage(db, period)
        rows = usage["by_model"]
        chart = charts.grouped([r["model"] for r in rows], {
            "input tokens": [r["input_tokens"] for r in rows],
            "output tokens": [r["output_tokens"] for r in rows]}, f"tokens per model, {period}") if rows else None
        return {**usage, "chart": chart}

    return await page(request, "console_usage.html", data=data)


@router.get("/revenue")
async def revenue_page(request: Request):
    """Revenue, upstream cost, serving cost and margin of a period per model and customer (upstream costs at
    the registered upstream models' prices), with a warning for each model sold below its cost."""
    db, conf, period, registry = database(request), settings(request), _period(request), registry_of(request)

    def data():
        r = billing_revenue.revenue(db, period, conf, upstream_rates=upstream_costs(registry))
        rows = [row for row in r["by_model"] if row["model"] != billing_revenue.NO_USAGE]
        currencies = {row["currency"] for row in rows}
        chart = charts.grouped([row["model"] for row in rows], {
            "revenue": [row["revenue"] for row in rows], "upstream cost": [row["upstream_cost"] for row in rows],
            "serving cost": [row["serving_cost"] for row in rows], "margin": [row["margin"] for row in rows]},
            f"revenue and costs per model, {period}", currencies.pop() if len(currencies) == 1 else "") \
            if rows else None
        return {**r, "chart": chart}

    return await page(request, "console_revenue.html", data=data)


@router.get("/invoices")
async def invoices_page(request: Request):
    db = database(request)
    return await page(request, "console_invoices.html",
                      invoices=lambda: billing_invoices.list_invoices(db)[-PAGE:][::-1])


def _channel_report(request: Request, period: str) -> list[dict]:
    """The channel report of `period`, with the upstream costs of the registered upstream models."""
    return analytics.report(database(request), settings(request), period,
                            upstream_rates=upstream_costs(registry_of(request)))


@router.get("/channels")
async def channels_page(request: Request):
    db, conf, period = database(request), settings(request), _period(request)

    def data():
        rows = _channel_report(request, period)
        codes = [r["code"] for r in rows]
        return {"rows": rows, "period": period,
                "funnel": charts.grouped(codes, {k: [r[k] for r in rows] for k in ("visits", "signups", "paying")},
                                         f"funnel, {period}") if rows else None,
                "economics": charts.grouped(codes, {"CAC": [r["cac"] for r in rows], "LTV": [r["ltv"] for r in rows]},
                                            "CAC and LTV", conf.channels_currency) if rows else None,
                "roi": charts.grouped(codes, {"ROI": [r["roi"] for r in rows], "ROAS": [r["roas"] for r in rows]},
                                      "ROI and ROAS") if rows else None,
                "costs": channels.list_costs(db, month=period), "links": channels.list_links(db)}

    return await page(request, "console_channels.html", data=data)


@router.get("/channels/report.csv")
async def report_csv(request: Request):
    """The channel report (admin only: every channel's revenue, costs and margins)."""
    period = _period(request)
    user = await guard(request, "admin")
    if isinstance(user, Response):
        return user
    text = await run_in_threadpool(lambda: analytics.report_csv(_channel_report(request, period)))
    return _csv(text, f"channels-{period}.csv")


@router.get("/channels/{code}")
async def channel_page(request: Request, code: str):
    db, period = database(request), _period(request)

    def data():
        ch = channel_queries.get_channel(db, code)
        row = next(r for r in _channel_report(request, period) if r["code"] == ch["code"])
        stages = [(k, row[k]) for k in ("visits", "signups", "keys", "first_calls", "first_paid")]
        co = analytics.cohorts(db, period, months=12, channel_id=ch["id"])
        return {"channel": ch, "row": row, "period": period, "cohorts": co,
                "funnel": charts.funnel(stages, f"{ch['code']}: signups of {period}"),
                "heatmap": charts.heatmap([c["cohort"] for c in co["cohorts"]], [c["retention"] for c in co["cohorts"]],
                                          "retention (% active)"),
                "customers": channel_queries.bound_customers(db, ch["id"], limit=PAGE),
                "links": channels.list_links(db, ch["id"]), "all_channels": channels.list_channels(db)}

    return await page(request, "console_channel.html", data=data)


@router.get("/partners")
async def partners_page(request: Request):
    db = database(request)
    return await page(request, "console_partners.html", partners=lambda: partners.list_partners(db),
                      rules=lambda: commissions.list_rules(db), ledger=lambda: commissions.list_commissions(db),
                      payouts=lambda: commissions.list_payouts(db))


# --- admin actions (forms) --------------------------------------------------------------------------

def _create_channel(fields, user, db):
    ch = channels.create_channel(db, fields.get("name", ""), fields.get("kind", ""), code=fields.get("code") or None,
                                 actor=user.actor)
    return {"message": f"channel {ch['name']} created", "value": f"?ref={ch['code']}"}


def _create_link(fields, user, db, code):
    utm = {k: fields.get(k) for k in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")}
    link = channels.create_link(db, code, landing=fields.get("landing") or "/store", actor=user.actor, **utm)
    return {"message": "tracking link created", "value": link["url"]}


def _set_cost(fields, user, db, currency):
    c = channels.set_cost(db, fields.get("channel", ""), fields.get("month", ""), fields.get("amount", ""),
                          kind=fields.get("kind") or "ad_spend", currency=fields.get("currency") or currency,
                          note=fields.get("note", ""), actor=user.actor)
    return {"message": f"{c['channel']} {c['month']} {c['kind']}: {c['amount']} {c['currency']}"}


def _import_costs(fields, user, db, currency):
    out = channels.import_costs_csv(db, fields.get("csv", ""), currency=currency, actor=user.actor)
    return {"message": f"imported {out['imported']} cost rows"}


def _rebind(fields, user, db, customer_id):
    b = attribution.rebind(db, customer_id, fields.get("channel", ""), reason=fields.get("reason", ""),
                           actor=user.actor)
    return {"message": f"customer {customer_id} is now bound to {b['channel']}"}


def _create_partner(fields, user, db):
    p = partners.create_partner(db, fields.get("name", ""), kind=fields.get("kind") or "affiliate",
                                email=fields.get("email") or None,
                                reseller_discount=fields.get("reseller_discount") or None, actor=user.actor)
    return {"message": f"partner {p['name']} created with channel ?ref={p['channel']['code']}"}


def _partner_key(fields, user, db, partner_id):
    k = partners.create_partner_key(db, partner_id, actor=user.actor)
    return {"message": "partner key created; this is the only time it is shown", "key": k["key"]}


def _rule(fields, user, db, partner_id, conf):
    hold = fields.get("hold_days")
    months = fields.get("months")
    r = commissions.create_rule(
        db, partner_id, fields.get("kind", ""), percent=fields.get("percent") or None,
        tiers=fields.get("tiers") or None,
        months=int(months) if months and months.isdigit() else None, bounty=fields.get("bounty") or None,
        currency=fields.get("currency") or conf.channels_currency,
        hold_days=int(hold) if hold and hold.isdigit() else conf.commission_hold_days, actor=user.actor)
    return {"message": f"rule {r['id']} ({r['kind']}) created for partner {partner_id}"}


def _run(fields, user, db):
    out = commissions.run_commissions(db, actor=user.actor)
    return {"message": "commissions: " + ", ".join(f"{k} {v}" for k, v in out.items())}


def _payout(fields, user, db, partner_id, currency):
    st = commissions.payout(db, partner_id, fields.get("month", ""), currency=fields.get("currency") or currency,
                            actor=user.actor)
    return {"message": f"statement {st['month']}: {st['total']} {st['currency']} ({len(st['entries'])} entries)",
            "link": f"/console/payouts/{st['id']}.csv"}


@router.post("/channels")
async def create_channel_action(request: Request):
    return await action(request, partial(_create_channel, db=database(request)), "/console/channels")


@router.post("/channels/{code}/links")
async def create_link_action(request: Request, code: str):
    return await action(request, partial(_create_link, db=database(request), code=code), f"/console/channels/{code}")


@router.post("/costs")
async def set_cost_action(request: Request):
    return await action(request, partial(_set_cost, db=database(request), currency=settings(request).channels_currency),
                        "/console/channels")


@router.post("/costs/import")
async def import_costs_action(request: Request):
    return await action(request, partial(_import_costs, db=database(request),
                                         currency=settings(request).channels_currency), "/console/channels")


@router.post("/customers/{customer_id}/rebind")
async def rebind_action(request: Request, customer_id: int):
    return await action(request, partial(_rebind, db=database(request), customer_id=customer_id), "/console/customers")


@router.post("/partners")
async def create_partner_action(request: Request):
    return await action(request, partial(_create_partner, db=database(request)), "/console/partners")


@router.post("/partners/{partner_id}/keys")
async def partner_key_action(request: Request, partner_id: int):
    return await action(request, partial(_partner_key, db=database(request), partner_id=partner_id),
                        "/console/partners")


@router.post("/partners/{partner_id}/rules")
async def rule_action(request: Request, partner_id: int):
    return await action(request, partial(_rule, db=database(request), partner_id=partner_id, conf=settings(request)),
                        "/console/partners")


@router.post("/commissions/run")
async def run_action(request: Request):
    return await action(request, partial(_run, db=database(request)), "/console/partners")


@router.post("/partners/{partner_id}/payouts")
async def payout_action(request: Request, partner_id: int):
    return await action(request, partial(_payout, db=database(request), partner_id=partner_id,
                                         currency=settings(request).channels_currency), "/console/partners")


@router.get("/payouts/{payout_id}.csv")
async def payout_csv(request: Request, payout_id: int):
    """A payout statement: any for an admin, only its own for a partner (another's is "does not exist")."""
    try:
        user = await current(request)
    except (Unauthorized, Forbidden) as e:
        return _to_login(request, e)
    try:
        st = await run_in_threadpool(commissions.get_statement, database(request), payout_id,
                                     partner_id=user.partner_id if user.kind == "partner" else None)
    except ModelshopError as e:
        return render(request, "error.html", status_code=e.status_code, message=e.message, back=HOME[user.kind])
    return _csv(commissions.statement_csv(st), f"payout-{st['month']}.csv")


# --- the partner's own view ---------------------------------------------------------------------------

@router.get("/partner")
async def partner_page(request: Request):
    db = database(request)
    user = await guard(request, "partner")
    if isinstance(user, Response):
        return user
    pid = user.partner_id
    return await show(request, user, "console_partner.html",
                      me=lambda: partners.get_partner(db, pid), customers=lambda: partners.customers(db, pid),
                      usage=lambda: partners.usage(db, pid), invoices=lambda: partners.invoices(db, pid),
                      ledger=lambda: commissions.list_commissions(db, partner_id=pid),
                      payouts=lambda: commissions.list_payouts(db, pid))
