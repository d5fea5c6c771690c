"""The storefront's chat widget: anonymous visitors talk to the bot marked `storefront`.

    POST /store/chat                  JSON {text, session_id?} → the bot's reply and the turn to rate
    POST /store/chat/rating           JSON {session_id, turn_id, rating: up|down}; down → the labelling queue
    GET  /store/chat/session?session_id=   the conversation so far (people's answers to hand-offs included)

Visitors hold no API key: these routes call the bot as the storefront, unmetered like the
playground, each under limits of its own per visitor and per address (`visitors.admit`); messages
and ratings also under one for all visitors together. The pages show the widget only when a bot
is marked (`modelshop apps bot create --storefront`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from modelshop.apps import support
from modelshop.errors import NotFound, ValidationError
from modelshop.serve.deps import app_state
from modelshop.web.deps import database, settings
from modelshop.web.visitors import admit

router = APIRouter(include_in_schema=False)

# The widget polls a handed-off conversation every 10 s (6 reads a minute); this leaves room for a few tabs.
SESSION_READS_RPM = 30


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
    await admit(request, "chat", conf.storefront_demo_rpm, "messages", everyone_rpm=conf.storefront_demo_global_rpm)
    bot = await run_in_threadpool(_public_bot, request)
    models = app_state(request).models  # the server's: the bot's models batched with /predict, one copy each
    out = await models.run(support.handle_message, bot, text, session_id, anonymous=True, settings=conf,
                           models=models)
    reply = {k: out[k] for k in ("session_id", "reply", "turn_id", "source", "handoff")}
    if out.get("faq"):
        reply["faq_question"] = out["faq"]["question"]
    return JSONResponse(reply, headers={"Cache-Control": "no-store"})


@router.post("/store/chat/rating")
async def chat_rating(request: Request):
    """Rate a reply of this conversation; a thumbs-down sends the message to the labelling queue."""
    shape = '{"session_id": "...", "turn_id": N, "rating": "up" | "down"}'
    conf = settings(request)
    body = await _json_body(request, shape)
    session_id = _session_id(body, shape, required=True)
    turn_id, rating = body.get("turn_id"), body.get("rating")
    if isinstance(turn_id, bool) or not isinstance(turn_id, int):
        raise ValidationError(f"turn_id: send the turn_id of the reply you rate; {shape}")
    if rating not in ("up", "down"):
        raise ValidationError(f'rating must be "up" or "down", got {rating!r}')
    # each call reads and may write the queue: limited like messages, even though a turn is queued once
    await admit(request, "chat rating", conf.storefront_demo_rpm, "ratings",
                everyone_rpm=conf.storefront_demo_global_rpm)
    bot = await run_in_threadpool(_public_bot, request)
    out = await run_in_threadpool(lambda: support.rate_turn(bot, turn_id, rating, session_id=session_id,
                                                            anonymous=True, settings=conf))
    return JSONResponse({"turn_id": out["turn_id"], "rating": rating, "queued": out["queued"]})


@router.get("/store/chat/session")
async def chat_session(request: Request, session_id: str = ""):
    """The conversation so far, so the widget shows a person's answer after a hand-off."""
    if not session_id:
        raise ValidationError("session_id: send the one the chat returned (?session_id=...)")
    await admit(request, "chat session", SESSION_READS_RPM, "reads")
    bot = await run_in_threadpool(_public_bot, request)
    out = await run_in_threadpool(lambda: support.get_session(bot, session_id, anonymous=True,
                                                              settings=settings(request)))
    return JSONResponse(out, headers={"Cache-Control": "no-store"})
