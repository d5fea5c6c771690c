"""The public storefront: one page per production model, fed by every stage of the platform.

    GET  /                            the storefront (a redirect to /store that keeps the query: ?ref=, utm_*)
    GET  /store                       the production models (classifiers and generative ones) and the pricing table
    GET  /store/{name}                card and figures (training), data profile (data), measured
                                      latency (the usage ledger), playground, pricing (plans), signup;
                                      for a generative model: context length, prices per million
                                      tokens per plan and the chat playground instead of the figures
    GET  /store/{name}/files/{file}   the version's evaluation charts (PNG)
    GET  /store/{name}/card.md        the full model card
    POST /store/playground            JSON {model, text} → labels; the demo principal, its own tight limits
    POST /store/{name}/chat           a generative model's chat playground, streamed (`web.llm_playground`)
    POST /store/signup                form: e-mail, plan, the page's token (+ ref/utm_*) → customer, channel, key once
    /store/chat...                    the support bot's chat widget (`web.chat`)

Every page view records the landing of the signed first-party visitor cookie (`web.visitors`; one
row per visitor and page) and a touch when it carries `ref` or `utm_*`; nothing else about the
visitor is kept and no third party is called. Anonymous calls are limited per visitor, per client
address and (the costly ones) for everyone together.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response

from modelshop.billing.accounts import list_plans
from modelshop.billing.queries import model_latency, token_price_list
from modelshop.channels import attribution
from modelshop.db import utcnow
from modelshop.errors import ModelshopError, NotFound, RateLimited, ValidationError
from modelshop.gate import UnmeteredCall
from modelshop.llm.registry import is_llm
from modelshop.registry import META_FILE, Registry
from modelshop.serve.deps import app_state
from modelshop.web import throttle
from modelshop.web.card import public, public_model, strip_paths
from modelshop.web.chat import chat_bot
from modelshop.web.chat import router as chat_router
from modelshop.web.deps import database, form, render, settings
from modelshop.web.llm_playground import MAX_MESSAGES, strings
from modelshop.web.llm_playground import router as llm_router
from modelshop.web.visitors import admit, keep_visitor, page_visitor, signup_token, signup_token_ok

router = APIRouter(include_in_schema=False)
router.include_router(chat_router)
router.include_router(llm_router)

CHART_FILES = ("confusion_matrix.png", "training_curves.png")
STALE_FORM = ("this signup form has expired or was not sent from this site; reload the page and submit it "
              "again (with cookies on)")


def registry_of(request: Request) -> Registry:
    return app_state(request).service.pool.registry


def production(request: Request, name: str | None = None) -> list:
    rows = [r for r in registry_of(request).production() if name is None or r.name == name]
    if name is not None and not rows:
        raise NotFound(f'no model named "{name}" is in production')
    return rows


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _track(request: Request, vid: str, record: bool) -> None:
    if record:
        attribution.record_visit(database(request), vid, request.url.path,
                                 attribution.tracking_params(request.query_params))


def _price(charge: dict) -> str:
    unit = charge["metric"]
    free = f'{charge["free_units"]:,} {unit} free, then ' if charge.get("free_units") else ""
    if charge["model"] == "unit":
        return f'{free}{charge["unit_price"]} per {unit[:-1]}'
    if charge["model"] == "package":
        return f'{free}{charge["package_price"]} per {charge["package_size"]:,} {unit}'
    tiers = "; ".join(f'{"up to " + format(t["up_to"], ",") if t["up_to"] else "above"}: {t["unit_price"]}'
                      for t in charge["tiers"])
    return f'{free}{unit}, {charge["model"]} tiers — {tiers}'


def pricing(request: Request) -> list[dict]:
    """The latest version of each offered plan, described for the pricing table."""
    offered = settings(request).storefront_plans
    latest: dict[str, dict] = {}
    for plan in list_plans(database(request)):
        if offered is None or plan["code"] in offered:
            latest[plan["code"]] = plan
    out = []
    for code, plan in latest.items():
        spec = plan["spec"]
        quota = spec.get("quota")
        out.append({"code": code, "name": spec.get("name") or code, "description": spec.get("description", ""),
                    "currency": plan["currency"], "interval": plan["interval"], "base_fee": spec.get("base_fee"),
                    "charges": [_price(c) for c in spec.get("charges", [])], "prepaid": spec.get("prepaid", False),
                    "quota": f'{quota["limit"]:,} {quota["metric"]}' if quota else None})
    return out


def model_token_prices(name: str, rows: list[dict], plans: list[dict]) -> list[dict]:
    """What each offered plan charges per million tokens of generative model `name` (`token_price_list`'s
    rows: the one naming the model, else the plan's price for every other model), in the pricing table's order."""
    chosen: dict[str, dict] = {}
    for r in rows:
        if r["model"] == name or (r["model"] is None and r["plan"] not in chosen):
            chosen[r["plan"]] = r
    return [{"plan": p["code"], "name": p["name"], "currency": chosen[p["code"]]["currency"],
             "input_per_million": chosen[p["code"]]["input_per_million"],
             "output_per_million": chosen[p["code"]]["output_per_million"]}
            for p in plans if p["code"] in chosen]


def generative_model(request: Request, row, price_rows: list[dict], plans: list[dict]) -> dict:
    """A generative version as the storefront shows it: kind, where it runs, context length, token prices."""
    meta = _json(registry_of(request).path(row) / META_FILE)
    # an upstream's URL, key variable and costs are the shop's business, never the storefront's
    source = "upstream" if row.family == "upstream" else "local"
    return {"name": row.name, "version": row.version, "kind": "generative", "source": source,
            "context_length": meta.get("context_length"), "architecture": meta.get("architecture"),
            "parameters": meta.get("parameters"), "prices": model_token_prices(row.name, price_rows, plans)}


def token_prices(request: Request) -> list[dict]:
    """The offered plans' prices per million tokens (billing's `token_price_list`)."""
    return token_price_list(database(request), codes=settings(request).storefront_plans)


def measured_latency(request: Request, name: str) -> dict:
    """Mean inference time per request of the model's production calls over 30 days (the usage ledger)."""
    measured = model_latency(database(request), name, since=utcnow() - dt.timedelta(days=30))
    ms = measured["mean_ms"]
    return {"calls": measured["calls"], "ms": f"{ms:.1f}" if ms is not None else None}


@router.get("/")
def root(request: Request):
    """The storefront, with the query kept: a referral link to the site root counts like one to /store."""
    query = request.url.query
    return RedirectResponse("/store" + (f"?{query}" if query else ""), status_code=307)


@router.get("/store")
async def index(request: Request):
    vid, record = await page_visitor(request)
    return await run_in_threadpool(_index, request, vid, record)


def _index(request: Request, vid: str, record: bool) -> Response:
    _track(request, vid, record)
    rows, plans = production(request), pricing(request)
    models = [{"name": r.name, "version": r.version, "kind": "classifier", "labels": r.labels,
               "metrics": public(r.metrics)} for r in rows if not is_llm(r)]
    generative = [r for r in rows if is_llm(r)]
    price_rows = token_prices(request) if generative else []
    llms = [generative_model(request, r, price_rows, plans) for r in generative]
    return keep_visitor(request, render(request, "store_index.html", models=models, llms=llms, plans=plans,
                                        s=strings(request),
                                        params=attribution.tracking_params(request.query_params),
                                        chat_bot=chat_bot(request),
                                        demo_max_chars=settings(request).storefront_demo_max_chars), vid)


@router.get("/store/{name}")
async def model_page(request: Request, name: str):
    vid, record = await page_visitor(request)
    return await run_in_threadpool(_model_page, request, name, vid, record)


def _model_page(request: Request, name: str, vid: str, record: bool, status_code: int = 200,
                params: dict | None = None, **signup) -> Response:
    """The model's page; after a failed signup, the same page with the form's error and values (`signup`)."""
    try:
        row = production(request, name)[0]
    except NotFound as e:
        return render(request, "error.html", status_code=404, message=e.message)
    _track(request, vid, record)
    if is_llm(row):
        return keep_visitor(request, _generative_page(request, row, vid, status_code, params, signup), vid)
    folder = registry_of(request).path(row)
    # the public sees no server paths (data files, checkpoint and base-model folders)
    page = dict(model=public_model(row), metrics=public(_json(folder / "metrics.json")),
                profile=public(_json(folder / "profile.json")), optimize=public(_json(folder / "optimize.json")),
                latency=measured_latency(request, name),
                charts=[f for f in CHART_FILES if (folder / f).is_file()], plans=pricing(request),
                params=attribution.tracking_params(request.query_params) if params is None else params,
                demo_max_chars=settings(request).storefront_demo_max_chars, chat_bot=chat_bot(request),
                csrf=signup_token(request, vid), signup=signup)
    return keep_visitor(request, render(request, "store_model.html", status_code=status_code, **page), vid)


def _generative_page(request: Request, row, vid: str, status_code: int, params: dict | None,
                     signup: dict) -> Response:
    """A generative model's page: what it is, its token prices, the chat playground, pricing and signup."""
    plans = pricing(request)
    page = dict(model=public_model(row), llm=generative_model(request, row, token_prices(request), plans),
                latency=measured_latency(request, row.name), plans=plans,
                params=attribution.tracking_params(request.query_params) if params is None else params,
                demo_max_chars=settings(request).storefront_demo_max_chars, max_messages=MAX_MESSAGES,
                s=strings(request), chat_bot=chat_bot(request), csrf=signup_token(request, vid), signup=signup)
    return render(request, "store_model.html", status_code=status_code, **page)


@router.get("/store/{name}/files/{file}")
def model_file(request: Request, name: str, file: str):
    if file not in CHART_FILES:
        raise NotFound(f"no file {file}; the storefront serves {', '.join(CHART_FILES)}")
    path = registry_of(request).path(production(request, name)[0]) / file
    if not path.is_file():
        raise NotFound(f"model {name} has no {file}")
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/store/{name}/card.md")
def model_card(request: Request, name: str):
    path = registry_of(request).path(production(request, name)[0]) / "card.md"
    if not path.is_file():
        raise NotFound(f"model {name} has no model card")
    return PlainTextResponse(strip_paths(path.read_text(encoding="utf-8")), media_type="text/markdown; charset=utf-8")


@router.post("/store/playground")
async def playground(request: Request):
    """One text through the production model as the demo principal, under the demo's own limits."""
    conf = settings(request)
    try:
        body = await request.json()
    except ValueError:
        raise ValidationError('send JSON: {"model": NAME, "text": "..."}') from None
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not isinstance(body.get("model"), str):
        raise ValidationError('send JSON: {"model": NAME, "text": "..."}')
    text = body["text"].strip()
    if not text:
        raise ValidationError("type a text first")
    if len(text) > conf.storefront_demo_max_chars:
        raise ValidationError(f"the playground takes at most {conf.storefront_demo_max_chars} characters; "
                              "sign up for a key to send more")
    await admit(request, "playground", conf.storefront_demo_rpm, "tries", " or sign up for your own key",
                everyone_rpm=conf.storefront_demo_global_rpm)
    from modelshop.serve.routes.predict import ranked

    service = app_state(request).service
    await run_in_threadpool(production, request, body["model"])
    served = await service.pool.get(body["model"])
    # the storefront's own limits above are its metering: the playground is free
    outcome = await service.infer(request, UnmeteredCall(), served, [(text, None)], truncate=True)
    return JSONResponse({"model": served.ref, "labels": ranked(outcome.rows[0], served, None)})


@router.post("/store/signup")
async def signup(request: Request):
    """A signup from a model page's form: the customer, its channel and its key, shown once.

    The form must carry the token its page was given for this visitor (a cross-site form has
    none: 403); a refused signup shows the page again with the error beside the form.
    """
    fields = await form(request)
    conf, db = settings(request), database(request)
    name = fields.get("model", "")
    vid = signup_token_ok(request, fields.get("csrf"))
    if vid is None:
        return render(request, "error.html", status_code=403, message=STALE_FORM,
                      back=f"/store/{name}" if name else "/store")
    params = attribution.tracking_params(fields)
    try:
        await throttle.admit(request, conf, [(f"signup:addr:{throttle.address_key(request, conf)}",
                                              conf.storefront_signup_rpm,
                                              "at most {n} signups a minute come from one address; retry in {s} s")])
        offered = {p["code"] for p in await run_in_threadpool(pricing, request)}
        plan = fields.get("plan", "")
        if plan not in offered:
            raise ValidationError(f'plan: choose one of {", ".join(sorted(offered)) or "(no plan is offered yet)"}')
        made = await run_in_threadpool(lambda: attribution.signup(
            db, conf, email=fields.get("email", ""), plan=plan, visitor_id=vid, params=params))
    except ModelshopError as e:
        response = await run_in_threadpool(_signup_refused, request, name, vid, e, fields, params)
        if isinstance(e, RateLimited):
            response.headers["Retry-After"] = str(max(1, round(e.retry_after)))
        return response
    response = render(request, "signup_done.html", made=made, model=name,
                      base=str(request.base_url).rstrip("/"))
    response.headers["Cache-Control"] = "no-store"
    return response


def _signup_refused(request: Request, name: str, vid: str, error: ModelshopError, fields: dict,
                    params: dict) -> Response:
    try:
        production(request, name)
    except NotFound:
        return render(request, "error.html", status_code=error.status_code, message=error.message, back="/store")
    response = _model_page(request, name, vid, False, status_code=error.status_code, params=params,
                           error=error.message, email=fields.get("email", ""), plan=fields.get("plan", ""))
    response.headers["Cache-Control"] = "no-store"
    return response
