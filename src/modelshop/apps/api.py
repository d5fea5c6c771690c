"""HTTP routes of the applications, under /apps. The chat widget's API is the support routes.

Every route authenticates through the server's gate (`Authorization: Bearer <key>`, the same
dependency as the model routes). Asking the FAQ, sending a bot message and asking for
recommendations are metered like model calls (one `metered(...)` block: the Idempotency-Key claimed,
admitted before the work, recorded before the reply) under the model names `faq.<kb>`, `bot.<bot>` and
`recommend.<name>`, so a key scoped to models can be scoped to apps too. Their tokens are counted by
the model the call runs, as that model reads them: the bot's intent model for a message, the
knowledge base's embedding model for a question, the recommender's for a cold-start user's `q`.
A bot with a generative model also meters its reply's `input_tokens` and `output_tokens` (its prompt
as the model read it, what it wrote), still under `bot.<bot>`, to the caller: its admission holds the
bot's prompt budget and reply length against quotas and wallets, its record is what was generated.
The app functions run on the server's `PooledModels` (`ModelsDep`): their model calls take the
batchers and worker processes of /predict and /v1/embeddings, on the models the server holds.
Tickets, the labelling queue and datasets are for operators (the admin key). Errors are the
server's `{"error", "error_type"}`.

    POST /apps/faq/{kb}/ask                          {"question", "top_k"?} → answers, confident
    POST /apps/support/{bot}/message                 {"session_id"?, "text"} → reply, intent, handoff ...
    POST /apps/support/{bot}/turns/{turn_id}/rating  {"rating": 1..5 | "up" | "down"}
    GET  /apps/support/{bot}/sessions/{session_id}   the conversation, with people's answers
    GET  /apps/support/tickets?status=open           hand-offs waiting for a person (admin)
    POST /apps/support/tickets/{ticket_id}/reply     {"text"} (admin)
    GET  /apps/recommend/{user}?k=10&model=&like=&q= items for a user, cold start included
    GET  /apps/labels?dataset=&limit=100             the labelling queue: pending items (admin)
    POST /apps/labels/{item_id}                      {"label", "new"?, "by"?}; "skip" sets it aside (admin)
    GET  /apps/datasets?name=                        dataset versions built from labelled items (admin)
    POST /apps/datasets/{name}/export                the next version: the last one + newly labelled (admin)
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from modelshop.apps import faq, feedback, recommend, support
from modelshop.apps.artifacts import ArtifactStore
from modelshop.errors import Forbidden, NotFound
from modelshop.gate import Principal, Units
from modelshop.serve.deps import Caller, CallerDep, ModelsDep, PrincipalDep, app_state
from modelshop.serve.metering import metered
from modelshop.serve.pooled_models import PooledModels
from modelshop.serve.routes import ERRORS
from modelshop.serve.service import Outcome

router = APIRouter(prefix="/apps", tags=["apps"])


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str = Field(..., description="the user's question", examples=["How long does a building permit take?"])
    top_k: int = Field(3, ge=1, le=faq.MAX_TOP_K, description="answers to return")


class Answer(BaseModel):
    id: str
    question: str
    answer: str
    score: float


class AskResponse(BaseModel):
    answers: list[Answer] = Field(description="best first; empty when not confident")
    confident: bool = Field(description="the best score reached the knowledge base's threshold")
    kb: str
    version: int
    threshold: float
    message: str | None = Field(None, description='"no confident answer" when not confident')
    suggestions: list[dict] | None = Field(None, description="when not confident: the nearest questions (no answers)")


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str | None = Field(None, description="omit to start a conversation; then send the one returned")
    text: str = Field(..., description="the user's message", examples=["Where is my parcel?"])


class MessageResponse(BaseModel):
    session_id: str
    reply: str
    intent: str
    confidence: float
    handoff: bool = Field(description="a person takes over; their answer appears in GET .../sessions/{session_id}")
    ticket_id: int | None = None
    turn_id: int = Field(description="rate this reply with POST .../turns/{turn_id}/rating")
    source: str = Field(description="faq | llm | intent | handoff | fallback | waiting")
    faq: dict | None = None
    citations: list[str] | None = Field(None, description="llm: ids of the FAQ answers the reply cites")
    llm: dict | None = Field(None, description="the generative model that answered: model, prompt_tokens, "
                             "completion_tokens, finish_reason, estimated, given (ids of the answers it read)")


class RatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rating: Literal["up", "down"] | int = Field(..., description='1..5, or "up" (5) / "down" (1)')


class TicketReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(..., description="the person's answer; it joins the conversation")
    by: str = Field("operator", max_length=100, description="who answered")


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(..., max_length=100, description='one of the item\'s choices, or "skip"')
    new: bool = Field(False, description="allow a label outside the item's choices")
    by: str = Field("api", max_length=100, description="who labelled")


def _outcome(units: Units, started: float) -> Outcome:
    return Outcome(rows=[], units=units, queue_s=0.0, inference_s=time.perf_counter() - started,
                   tokenize_s=0.0, truncated=0)


def _counted(tokens: Callable[[], Awaitable[int]] | None, text: str) -> Callable[[], Awaitable[Units]]:
    """The units of an app call whose model reads `tokens()` tokens of `text`."""
    async def units() -> Units:
        return Units(requests=1, tokens=await tokens() if tokens else 0, characters=len(text))
    return units


async def _metered(request: Request, caller: Caller, models: PooledModels, meter_as: str, text: str,
                   units: Callable[[], Awaitable[Units]], work: Callable[[], tuple[dict, str]],
                   used: Callable[[dict, Units], tuple[Units, dict]] | None = None):
    """claim → count the units the call may use → admit → the app's work (on an app thread, its model calls
    on the server's batchers) → record what it used (`used(payload, admitted)`, default: the units admitted)
    → reply: the model routes' path, for an app call."""
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        missing = None
        try:
            admitted = await units()
        except NotFound as e:  # answered once admitted: a key outside its scope gets 403, and learns nothing
            admitted, missing = Units(requests=1, tokens=0, characters=len(text)), e
        await m.admit(meter_as, admitted)
        if missing is not None:
            raise missing
        started = time.perf_counter()
        payload, ref = await models.run(work)
        spent, extra = used(payload, admitted) if used else (admitted, {})
        return await m.reply(ref, payload, _outcome(spent, started), extra=extra)


@router.post("/faq/{kb}/ask", response_model=AskResponse, responses=ERRORS)
async def faq_ask(kb: str, body: AskRequest, request: Request, caller: CallerDep, models: ModelsDep):
    """The best answers of knowledge base `kb`; "no confident answer" below its threshold."""
    settings = app_state(request).settings
    question = faq.check_question(body.question, body.top_k)
    row = await asyncio.to_thread(ArtifactStore.from_settings(settings).get, faq.KIND, kb)  # 404 before metering

    def work():
        out = faq.ask(kb, question, body.top_k, settings=settings, models=models)
        return out, f"faq.{out['kb']}:{out['version']}"

    count = functools.partial(models.acount_tokens, [question], row.meta.get("embedding_model"), task="embed")
    return await _metered(request, caller, models, f"faq.{kb.partition(':')[0]}", question,
                          _counted(count, question), work)


@router.post("/support/{bot}/message", response_model=MessageResponse, responses=ERRORS)
async def support_message(bot: str, body: MessageRequest, request: Request, caller: CallerDep, models: ModelsDep):
    """One message to the bot; the reply says whether a person takes over (and the ticket)."""
    settings = app_state(request).settings
    customer = caller.principal.customer_id
    text = support.check_text(body.text, settings)

    async def units() -> Units:
        """The intent model reads every message; a generated reply may take the bot's prompt budget and reply
        length on top (held until the real usage is recorded)."""
        config = await asyncio.to_thread(support.get_bot, bot, settings=settings)
        n = await models.acount_tokens([text], config["intent_model"])
        prompt, reply = support.generation_reserve(config)
        return Units(requests=1, tokens=n + prompt + reply, characters=len(text), input_tokens=prompt,
                     output_tokens=reply)

    def work():
        out = support.handle_message(bot, body.text, body.session_id, customer_id=customer, settings=settings,
                                     models=models)
        return out, f"bot.{bot}"

    def used(out: dict, admitted: Units) -> tuple[Units, dict]:
        """What the reply used: the intent model's tokens, and what the generative model read and wrote."""
        g = out.get("llm") or {}
        read, wrote = g.get("prompt_tokens", 0), g.get("completion_tokens", 0)
        intent = admitted.tokens - admitted.input_tokens - admitted.output_tokens
        units = Units(requests=1, tokens=intent + read + wrote, characters=admitted.characters, input_tokens=read,
                      output_tokens=wrote)
        return units, {"estimated": True} if g.get("estimated") else {}

    return await _metered(request, caller, models, f"bot.{bot}", text, units, work, used)


@router.post("/support/{bot}/turns/{turn_id}/rating", responses=ERRORS)
async def support_rating(bot: str, turn_id: int, body: RatingRequest, request: Request, principal: PrincipalDep):
    """Rate a reply; a low rating sends the message to the labelling queue."""
    settings = app_state(request).settings
    return await asyncio.to_thread(support.rate_turn, bot, turn_id, body.rating,
                                   customer_id=principal.customer_id, settings=settings)


@router.get("/support/{bot}/sessions/{session_id}", responses=ERRORS)
async def support_session(bot: str, session_id: str, request: Request, principal: PrincipalDep):
    """The conversation so far, including the answers of people to hand-offs."""
    settings = app_state(request).settings
    return await asyncio.to_thread(support.get_session, bot, session_id, customer_id=principal.customer_id,
                                   settings=settings)


def _operator(principal: Principal, what: str = "tickets are") -> None:
    if principal.kind != "admin":
        raise Forbidden(f"{what} for operators; use the admin key")


@router.get("/support/tickets", responses=ERRORS)
async def support_tickets(request: Request, principal: PrincipalDep,
                          status: Literal["open", "answered"] | None = "open",
                          bot: str | None = None):
    """Hand-offs (open ones by default), each with its conversation."""
    _operator(principal)
    settings = app_state(request).settings
    return await asyncio.to_thread(support.list_tickets, status, bot, settings=settings)


@router.post("/support/tickets/{ticket_id}/reply", responses=ERRORS)
async def support_ticket_reply(ticket_id: int, body: TicketReply, request: Request, principal: PrincipalDep):
    """A person answers a ticket; the bot takes the conversation back."""
    _operator(principal)
    settings = app_state(request).settings
    return await asyncio.to_thread(support.reply_ticket, ticket_id, body.text, by=body.by, settings=settings)


@router.get("/recommend/{user}", responses=ERRORS)
async def recommend_items(user: str, request: Request, caller: CallerDep, models: ModelsDep,
                          k: int = Query(10, ge=1, le=100),
                          model: str | None = Query(None, description="recommender NAME[:VERSION]; "
                                                    "default: the only one"),
                          like: str | None = Query(None, description="comma-separated item ids the user just liked"),
                          q: str | None = Query(None, max_length=1000,
                                                description="what the user looks for, in words")):
    """Top-k unseen items for `user`; a new user gets popular items, blended with `like`/`q` content."""
    settings = app_state(request).settings
    row = await asyncio.to_thread(recommend.resolve, model, settings)
    liked = [i.strip() for i in like.split(",") if i.strip()] if like else None
    embeds = await asyncio.to_thread(recommend.embeds_query, user, q, row, settings)

    def work():
        out = recommend.recommend(user, k, model=row.ref, like=liked, query=q, settings=settings, models=models)
        return out, f"recommend.{row.ref}"

    count = None  # a known user's history ranks the items: no model reads q
    if embeds:
        count = functools.partial(models.acount_tokens, [q], row.meta.get("embedding_model"), task="embed")
    return await _metered(request, caller, models, f"recommend.{row.name}", q or "", _counted(count, q or ""), work)


@router.get("/labels", responses=ERRORS)
async def label_queue(request: Request, principal: PrincipalDep, dataset: str | None = None,
                      limit: int = Query(100, ge=1, le=1000)):
    """Pending items of the labelling queue (unsure and down-rated messages), oldest first."""
    _operator(principal, "the labelling queue is")
    return await asyncio.to_thread(feedback.pending, dataset, limit=limit, settings=app_state(request).settings)


@router.post("/labels/{item_id}", responses=ERRORS)
async def label_one(item_id: int, body: LabelRequest, request: Request, principal: PrincipalDep):
    """Give one item its label; it joins the next version of its dataset."""
    _operator(principal, "the labelling queue is")
    return await asyncio.to_thread(feedback.label_item, item_id, body.label, by=body.by, allow_new=body.new,
                                   settings=app_state(request).settings)


@router.get("/datasets", responses=ERRORS)
async def dataset_versions(request: Request, principal: PrincipalDep, name: str | None = None):
    """Dataset versions made from labelled items, each with its file, sha256 and parent."""
    _operator(principal, "datasets are")
    return await asyncio.to_thread(feedback.list_datasets, name, settings=app_state(request).settings)


@router.post("/datasets/{name}/export", responses=ERRORS)
async def dataset_export(name: str, request: Request, principal: PrincipalDep):
    """Write the next version of dataset `name` (its last version + the items labelled since)."""
    _operator(principal, "datasets are")
    return await asyncio.to_thread(feedback.export_dataset, name, settings=app_state(request).settings)


routers = [router]  # mounted by modelshop.serve.create_app
