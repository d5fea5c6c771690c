"""The public storefront: one page per production model, fed by every stage of the platform.

    GET  /store                       the production models and the pricing table
    GET  /store/{name}                card and figures (training), data profile (data), measured
                                      latency (the usage ledger), playground, pricing (plans), signup
    GET  /store/{name}/files/{file}   the version's evaluation charts (PNG)
    GET  /store/{name}/card.md        the full model card
    POST /store/playground            JSON {model, text} → labels; the demo principal, its own tight limits
    POST /store/signup                form: e-mail, plan (+ the page's ref/utm_*) → customer, channel, key once
    POST /store/chat                  JSON {text, session_id?} → the storefront bot's reply (anonymous visitors)
    POST /store/chat/rating           JSON {session_id, turn_id, rating: up|down}; down → the labelling queue
    GET  /store/chat/session?session_id=   the conversation so far (people's answers to hand-offs included)

The chat widget talks to the bot marked `storefront` (`modelshop apps bot create --storefront`); the
pages show it only when there is one. Visitors hold no API key: these routes call the bot as
the storefront, under the storefront's own per-visitor and global limits, unmetered like the
playground.

Every page view records a visit of the first-party visitor cookie (and a touch when it carries
`ref` or `utm_*`); nothing else about the visitor is kept and no third party is called.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from sqlalchemy import func, select

from modelshop.apps import support
from modelshop.billing.accounts import list_plans
from modelshop.billing.limits import LocalLimiter, RedisLimiter
from modelshop.billing.tables import UsageEvent
from modelshop.channels import attribution
from modelshop.db import utcnow
from modelshop.errors import ModelshopError, NotFound, RateLimited, ValidationError
from modelshop.registry import Registry
from modelshop.serve.gate import Principal
from modelshop.web.deps import database, form, render, set_cookie, settings

router = APIRouter(include_in_schema=False)

VISITOR_COOKIE = "ms_visitor"
CHART_FILES = ("confusion_matrix.png", "training_curves.png")
DEMO = Principal(kind="demo", label="storefront-demo")
GLOBAL_BUCKET = -1  # the demo's limiter key shared by every visitor
SIGNUP_BUCKETS = -2  # signups are limited in keys below this one, per client address
CHAT_BUCKETS = 16 ** 15  # chat is limited in keys from this one up, per visitor (the playground's are below)
CHAT_GLOBAL = 2 * 16 ** 15


def registry_of(request: Request) -> Registry:
    service = getattr(request.app.state, "service", None)
    pool = getattr(service, "pool", None)
    return getattr(pool, "registry", None) or Registry.from_settings(settings(request))


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


def visitor_id(request: Request) -> tuple[str, bool]:
    """The visitor's id from its cookie, or a new one (and whether it is new)."""
    known = attribution.valid_visitor(request.cookies.get(VISITOR_COOKIE))
    return (known, False) if known else (attribution.new_visitor_id(), True)


def _visited(request: Request, response: Response, vid: str) -> Response:
    days = settings(request).attribution_window_days
    set_cookie(request, response, VISITOR_COOKIE, vid, max_age=days * 86400)
    return response


def _track(request: Request) -> str:
    vid, _ = visitor_id(request)
    attribution.record_visit(database(request), vid, request.url.path,
                             attribution.tracking_params(request.query_params))
    return vid


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


def measured_latency(request: Request, name: str) -> dict:
    """Mean inference time per request of the model's production calls over 30 days (the usage ledger)."""
    since = utcnow() - dt.timedelta(days=30)
    with database(request).session() as s:
        us, n = s.execute(select(func.sum(UsageEvent.compute_us), func.sum(UsageEvent.requests)).where(
            UsageEvent.model.startswith(f"{name}:", autoescape=True), UsageEvent.occurred_at >= since)).one()
    n = int(n or 0)
    return {"calls": n, "ms": f"{int(us or 0) / n / 1000:.1f}" if n else None}


@router.get("/store")
def index(request: Request):
    vid = _track(request)
    models = [{"name": r.name, "version": r.version, "labels": r.labels, "metrics": r.metrics}
              for r in production(request)]
    return _visited(request, render(request, "store_index.html", models=models, plans=pricing(request),
                                    params=attribution.tracking_params(request.query_params),
                                    chat_bot=chat_bot(request),
                                    demo_max_chars=settings(request).storefront_demo_max_chars), vid)


@router.get("/store/{name}")
def model_page(request: Request, name: str):
    try:
        row = production(request, name)[0]
    except NotFound as e:
        return render(request, "error.html", status_code=404, message=e.message)
    vid = _track(request)
    folder = registry_of(request).path(row)
    profile = _json(folder / "profile.json")
    page = dict(model=row, metrics=_json(folder / "metrics.json"), profile=profile,
                optimize=_json(folder / "optimize.json"), latency=measured_latency(request, name),
                charts=[f for f in CHART_FILES if (folder / f).is_file()], plans=pricing(request),
                params=attribution.tracking_params(request.query_params),
                demo_max_chars=settings(request).storefront_demo_max_chars, chat_bot=chat_bot(request))
    return _visited(request, render(request, "store_model.html", **page), vid)


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
    return PlainTextResponse(path.read_text(encoding="utf-8"), media_type="text/markdown; charset=utf-8")


def _limiter(request: Request):
    state = request.app.state
    limiter = getattr(state, "demo_limiter", None)
    if limiter is None:
        conf = settings(request)
        limiter = (RedisLimiter(conf.redis_url, f"{conf.rate_limit_prefix}:demo") if conf.redis_url
                   else LocalLimiter())
        state.demo_limiter = limiter
    return limiter


def _address(request: Request) -> str:
    return hashlib.sha256(f"ip:{request.client.host if request.client else ''}".encode()).hexdigest()


async def _admit(request: Request, bucket: int, rpm: int, what: str) -> None:
    verdict = await _limiter(request).acquire(bucket, rpm, None, 0)
    if not verdict.allowed:
        raise RateLimited(what.format(n=rpm, s=max(1, round(verdict.retry_after))), retry_after=verdict.retry_after)


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
    # per visitor cookie, else per client address (a script without cookies gets no fresh bucket per call)
    who = attribution.valid_visitor(request.cookies.get(VISITOR_COOKIE)) or _address(request)
    busy = "the playground allows {n} tries a minute; retry in {s} s or sign up for your own key"
    await _admit(request, int(who[:15], 16), conf.storefront_demo_rpm, busy)
    await _admit(request, GLOBAL_BUCKET, conf.storefront_demo_global_rpm, busy)
    from modelshop.serve.routes.predict import ranked

    service = request.app.state.service
    await run_in_threadpool(production, request, body["model"])
    served = await service.pool.get(body["model"])
    outcome = await service.infer(request, DEMO, served, [(text, None)], truncate=True)
    return JSONResponse({"model": served.ref, "labels": ranked(outcome.rows[0], served, None)})


def chat_bot(request: Request) -> str | None:
    """The bot of the storefront's chat widget, or None (no widget)."""
    return support.storefront_bot(db=database(request))


def _public_bot(request: Request) -> str:
    bot = chat_bot(request)
    if bot is None:
        raise NotFound("the storefront has no chat bot; mark one with "
                       "`modelshop apps bot create --name NAME --intent-model M --kb KB --storefront --replace`")
    return bot


async def _json_body(request: Request, shape: str) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise ValidationError(f"send JSON: {shape}") from None
    if not isinstance(body, dict):
        raise ValidationError(f"send JSON: {shape}")
    return body


def _session_id(body: dict, shape: str, required: bool = False) -> str | None:
    value = body.get("session_id")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValidationError(f"session_id: send the one the chat returned; {shape}")
    return value


async def _admit_chat(request: Request) -> None:
    conf = settings(request)
    who = attribution.valid_visitor(request.cookies.get(VISITOR_COOKIE)) or _address(request)
    busy = "the chat allows {n} messages a minute; retry in {s} s"
    await _admit(request, CHAT_BUCKETS + int(who[:15], 16), conf.storefront_demo_rpm, busy)
    await _admit(request, CHAT_GLOBAL, conf.storefront_demo_global_rpm, busy)


@router.post("/store/chat")
async def chat(request: Request):
    """One visitor message to the storefront's bot: its reply, and the turn to rate."""
    shape = '{"text": "...", "session_id": "..." (omit it for a new conversation)}'
    conf = settings(request)
    body = await _json_body(request, shape)
    if not isinstance(body.get("text"), str):
        raise ValidationError(f"text: type a message; send JSON {shape}")
    text = body["text"].strip()
    if not text:
        raise ValidationError("type a message first")
    if len(text) > conf.storefront_demo_max_chars:
        raise ValidationError(f"the chat takes at most {conf.storefront_demo_max_chars} characters a message; "
                              "split it in two")
    session_id = _session_id(body, shape)
    bot = await run_in_threadpool(_public_bot, request)
    await _admit_chat(request)
    out = await run_in_threadpool(lambda: support.handle_message(bot, text, session_id, anonymous=True,
                                                                            settings=conf))
    reply = {k: out[k] for k in ("session_id", "reply", "turn_id", "source", "handoff")}
    if out.get("faq"):
        reply["faq_question"] = out["faq"]["question"]
    return JSONResponse(reply, headers={"Cache-Control": "no-store"})


@router.post("/store/chat/rating")
async def chat_rating(request: Request):
    """Rate a reply of this conversation; a thumbs-down sends the message to the labelling queue."""
    shape = '{"session_id": "...", "turn_id": N, "rating": "up" | "down"}'
    body = await _json_body(request, shape)
    session_id = _session_id(body, shape, required=True)
    turn_id, rating = body.get("turn_id"), body.get("rating")
    if isinstance(turn_id, bool) or not isinstance(turn_id, int):
        raise ValidationError(f"turn_id: send the turn_id of the reply you rate; {shape}")
    if rating not in ("up", "down"):
        raise ValidationError(f'rating must be "up" or "down", got {rating!r}')
    bot = await run_in_threadpool(_public_bot, request)
    # no limit of its own: only turns of the visitor's own conversation, each queued once, so the
    # chat's message limit bounds what ratings can add to the queue
    out = await run_in_threadpool(lambda: support.rate_turn(bot, turn_id, rating, session_id=session_id, anonymous=True,
                                                            settings=settings(request)))
    return JSONResponse({"turn_id": out["turn_id"], "rating": rating, "queued": out["queued"]})


@router.get("/store/chat/session")
async def chat_session(request: Request, session_id: str = ""):
    """The conversation so far, so the widget shows a person's answer after a hand-off."""
    if not session_id:
        raise ValidationError("session_id: send the one the chat returned (?session_id=...)")
    bot = await run_in_threadpool(_public_bot, request)
    out = await run_in_threadpool(lambda: support.get_session(bot, session_id, anonymous=True,
                                                                         settings=settings(request)))
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


@router.post("/store/signup")
async def signup(request: Request):
    fields = await form(request)
    conf, db = settings(request), database(request)
    name = fields.get("model", "")
    try:
        await _admit(request, SIGNUP_BUCKETS - int(_address(request)[:15], 16), conf.storefront_signup_rpm,
                     "at most {n} signups a minute come from one address; retry in {s} s")
        offered = {p["code"] for p in await run_in_threadpool(pricing, request)}
        plan = fields.get("plan", "")
        if plan not in offered:
            raise ValidationError(f'plan: choose one of {", ".join(sorted(offered)) or "(no plan is offered yet)"}')
        vid, _ = visitor_id(request)
        made = await run_in_threadpool(lambda: attribution.signup(
            db, conf, email=fields.get("email", ""), plan=plan, visitor_id=vid,
            params=attribution.tracking_params(fields)))
    except ModelshopError as e:
        return render(request, "error.html", status_code=e.status_code, message=e.message,
                      back=f"/store/{name}" if name else "/store")
    response = render(request, "signup_done.html", made=made, model=name,
                      base=str(request.base_url).rstrip("/"))
    response.headers["Cache-Control"] = "no-store"
    return response
