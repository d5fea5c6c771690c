"""The customer-service bot: an intent model, a FAQ knowledge base and hand-off rules.

One message, in this order:
    1. the session is with a person (open ticket)  → "a person will answer here", nothing else
    2. the user asks for a person (a configured phrase, English or Chinese)       → hand-off
    3. the intent is a hand-off intent (complaint, human_agent; configurable), confidently → hand-off
    4. the knowledge base answers confidently                                     → the FAQ answer, or with
       a generative model (`llm`), a reply it composes from the top answers, citing their ids (`compose`)
    5. the intent is confident and has a reply                                    → the intent's reply
    6. otherwise an unsure reply; after `max_unsure_turns` of them in a row       → hand-off
The generative model writes only at step 4: a person and the rules win everywhere else, as without it.
A message whose intent confidence is below `min_confidence` also goes to the labelling queue, and
so does one whose reply is rated down. A hand-off opens a ticket that a person answers
(`reply_ticket`); the answer shows in the session and the bot takes over again.

The intent model, the knowledge base's embedding model and the generative model are reached through
`models` (a `Models`): inside the server its `PooledModels` (the served versions, batched with
/predict and /v1/chat/completions), elsewhere `DirectModels`, the default.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select

from modelshop.apps import compose, faq
from modelshop.apps.artifacts import check_name
from modelshop.apps.feedback import enqueue
from modelshop.apps.tables import Bot, ChatSession, Ticket, Turn
from modelshop.db import Database, get_database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError, did_you_mean
from modelshop.inference.models import Models
from modelshop.settings import Settings, get_settings

FALLBACK = "Sorry, I am not sure I understood. Could you say it in other words?"
HANDOFF = "I am passing you to a person from our team; they will answer here shortly."
WAITING = "A person from our team has your conversation and will answer here soon."
INTENT_REPLY = "Thanks, I see this is about {intent}. Could you give me a few more details so I can help?"
RATINGS = {"up": 5, "down": 1}


# --- bots ---------------------------------------------------------------------------------------

def create_bot(name: str, intent_model: str, kb: str | None = None, *, dataset: str | None = None,
               min_confidence: float | None = None, handoff_intents: list[str] | None = None,
               handoff_phrases: list[str] | None = None, replies: dict[str, str] | None = None,
               max_unsure_turns: int | None = None, storefront: bool = False, llm: str | None = None,
               llm_max_tokens: int | None = None, replace: bool = False, settings: Settings | None = None) -> dict:
    """Create (or with `replace`, reconfigure) bot `name`; the model and knowledge base must exist.

    `storefront` makes it the public bot of the storefront's chat widget (anonymous visitors, the
    storefront's own rate limits); the newest such bot wins when several are marked. `llm` names a
    generative model (local or upstream) that composes its FAQ replies, at most `llm_max_tokens` long.
    """
    from modelshop.apps.artifacts import ArtifactStore
    from modelshop.registry import Registry

    settings = settings or get_settings()
    check_name(name, "bot name")
    model = Registry.from_settings(settings).get(intent_model)     # NotFound with "did you mean"
    if kb is not None:
        ArtifactStore.from_settings(settings).get(faq.KIND, kb)
    if llm_max_tokens is not None and not llm:
        raise ValidationError("llm_max_tokens needs a generative model: pass llm (--llm NAME) too")
    if llm and kb is None:
        raise ValidationError("a generative model composes replies from the knowledge base's answers: pass kb "
                              "(--kb KB) too")
    min_confidence = settings.support_min_confidence if min_confidence is None else min_confidence
    if not 0 <= min_confidence <= 1:
        raise ValidationError(f"min_confidence must be between 0 and 1, got {min_confidence}")
    handoff_intents = list(settings.support_handoff_intents if handoff_intents is None else handoff_intents)
    unknown = [i for i in [*handoff_intents, *(replies or {})] if i not in model.labels]
    if unknown:
        raise ValidationError(f'intent "{unknown[0]}" is not a label of model {model.ref} '
                              f'({", ".join(model.labels)}){did_you_mean(unknown[0], model.labels)}')
    config = {"min_confidence": min_confidence, "handoff_intents": handoff_intents,
              "handoff_phrases": list(settings.support_handoff_phrases if handoff_phrases is None
                                      else handoff_phrases),
              "replies": dict(replies or {}),
              "max_unsure_turns": max_unsure_turns or settings.support_max_unsure_turns,
              "storefront": bool(storefront), **(_llm_config(llm, llm_max_tokens, settings) if llm else {})}
    db = get_database(settings)
    with db.session() as s:
        bot = s.scalar(select(Bot).where(Bot.name == name))
        if bot is not None and not replace:
            raise Conflict(f'bot "{name}" exists; pass --replace to reconfigure it')
        if bot is None:
            bot = Bot(name=name, created_at=utcnow())
            s.add(bot)
        bot.intent_model, bot.kb, bot.dataset, bot.llm = intent_model, kb, dataset or name, llm or None
        bot.config, bot.updated_at = config, utcnow()
        s.flush()
        return bot_dict(bot)


def set_llm(name: str, llm: str | None, *, max_tokens: int | None = None, settings: Settings | None = None) -> dict:
    """Bot `name` composes its FAQ replies with generative model `llm` from now on; None: the FAQ's answers
    verbatim again (every other setting of the bot is kept)."""
    settings = settings or get_settings()
    if llm is None and max_tokens is not None:
        raise ValidationError("max_tokens needs a generative model; name one, or leave max_tokens out to unset it")
    extra = _llm_config(llm, max_tokens, settings) if llm else {}
    with get_database(settings).session() as s:
        bot = _bot(s, name)
        if llm and not bot.kb:
            raise ValidationError(f'bot "{name}" has no knowledge base for the model to answer from; '
                                  "recreate it with --kb KB --replace")
        config = {k: v for k, v in bot.config.items() if not k.startswith("llm_")}
        bot.llm, bot.config, bot.updated_at = llm, {**config, **extra}, utcnow()
        return bot_dict(bot)


def _llm_config(llm: str, max_tokens: int | None, settings: Settings) -> dict:
    """The bot's settings for generative model `llm`, which must be registered and hold a chat: its prompt
    budget and reply length (from the model's context length), the answers it is given."""
    from modelshop.llm.registry import is_llm
    from modelshop.registry import Registry

    registry = Registry.from_settings(settings)
    row = registry.get(llm)  # NotFound with "did you mean"
    if not is_llm(row):
        raise ValidationError(f'"{row.ref}" is a classifier, not a generative model; `modelshop llm list` shows '
                              "the generative ones")
    try:
        meta = registry.meta(row)
    except (OSError, ValueError):
        meta = {}
    if row.family != "upstream" and meta.get("has_chat_template") is False:
        raise ValidationError(f'generative model "{row.name}" has no chat template; the bot talks to it as a '
                              "chat: register an instruct (chat) model")
    prompt_tokens, max_tokens = compose.budgets(meta.get("context_length"), max_tokens)
    return {"llm_prompt_tokens": prompt_tokens, "llm_max_tokens": max_tokens, "llm_top_k": compose.TOP_K}


def generation_reserve(config: dict) -> tuple[int, int]:
    """(input, output) tokens a message to a bot of `config` (`get_bot`) may spend on a generated reply, at
    most: what its meter holds against quotas and wallets until the real usage is known."""
    if not config.get("llm"):
        return 0, 0
    return int(config["llm_prompt_tokens"]), int(config["llm_max_tokens"])


def bot_dict(bot: Bot) -> dict:
    return {"name": bot.name, "intent_model": bot.intent_model, "kb": bot.kb, "dataset": bot.dataset,
            "llm": bot.llm, **bot.config}


def list_bots(settings: Settings | None = None) -> list[dict]:
    with get_database(settings).session() as s:
        return [bot_dict(b) for b in s.scalars(select(Bot).order_by(Bot.name))]


def storefront_bot(settings: Settings | None = None, db: Database | None = None) -> str | None:
    """The name of the bot the storefront's chat widget talks to (the newest marked one), or None."""
    db = db or get_database(settings)
    with db.session() as s:
        marked = [b for b in s.scalars(select(Bot).order_by(Bot.updated_at.desc(), Bot.id.desc()))
                  if (b.config or {}).get("storefront")]
        return marked[0].name if marked else None


def _bot(s, name: str) -> Bot:
    bot = s.scalar(select(Bot).where(Bot.name == name))
    if bot is None:
        names = list(s.scalars(select(Bot.name)))
        hint = did_you_mean(name, names) or (f" (bots: {', '.join(sorted(names))})" if names
                                             else " (none yet; make one with `modelshop apps bot create`)")
        raise NotFound(f'no bot named "{name}"{hint}')
    return bot


def get_bot(name: str, *, settings: Settings | None = None, db: Database | None = None) -> dict:
    """Bot `name`'s configuration (its intent model, knowledge base, rules)."""
    db = db or get_database(settings)
    with db.session() as s:
        return bot_dict(_bot(s, name))


def classify(models: Models, intent_model: str, text: str) -> tuple[str, float, list[str]]:
    """(intent, confidence, every label) from the intent model."""
    out = models.classify(intent_model, [text])
    intent, confidence = out.best()
    return intent, confidence, list(out.labels)


# --- messages -----------------------------------------------------------------------------------

def handle_message(bot_name: str, text: str, session_id: str | None = None, *, customer_id: int | None = None,
                   anonymous: bool = False, settings: Settings | None = None, models: Models | None = None) -> dict:
    """Answer one message: {session_id, reply, intent, confidence, handoff, ticket_id?, turn_id, source}; a
    reply composed by the bot's generative model (source "llm") adds citations and llm (model, tokens)."""
    settings = settings or get_settings()
    models = models or faq.direct_models(settings)
    text = check_text(text, settings)
    db = get_database(settings)
    with db.session() as s:
        bot = _bot(s, bot_name)
        session = _session(s, bot, session_id, customer_id, anonymous) if session_id else None
        waiting = session is not None and session.status == "handed_off"
        recent = [t.source for t in s.scalars(select(Turn).where(Turn.session_id == session.id)
                                              .order_by(Turn.id.desc()).limit(10))] if session else []
        bot_id, intent_model, kb, dataset, cfg = bot.id, bot.intent_model, bot.kb, bot.dataset, dict(bot.config)
        llm = bot.llm
    intent, confidence, labels = classify(models, intent_model, text)
    sure = confidence >= cfg["min_confidence"]
    outcome = {"source": "fallback", "reply": FALLBACK, "handoff": False, "reason": None, "faq": None,
               "composed": None}
    lowered = text.lower()
    if waiting:
        outcome.update(source="waiting", reply=WAITING, handoff=True)
    elif any(p.lower() in lowered for p in cfg["handoff_phrases"]):
        outcome.update(source="handoff", reply=HANDOFF, handoff=True, reason="requested")
    elif sure and intent in cfg["handoff_intents"]:
        outcome.update(source="handoff", reply=HANDOFF, handoff=True, reason=f"intent:{intent}")
    else:
        top_k = cfg["llm_top_k"] if llm else 1
        answer = faq.ask(kb, text, top_k, settings=settings, models=models)["answers"] if kb else []
        if answer:
            outcome.update(source="faq", reply=answer[0]["answer"], faq=answer[0])
            if llm:
                composed = compose.compose(models, llm, text, answer, prompt_tokens=cfg["llm_prompt_tokens"],
                                           max_tokens=cfg["llm_max_tokens"])
                outcome["composed"] = composed
                if composed is not None and composed.reply is not None:
                    outcome.update(source="llm", reply=composed.reply)
        elif sure:
            outcome.update(source="intent", reply=cfg["replies"].get(intent) or INTENT_REPLY.format(
                intent=intent.replace("_", " ")))
        elif _unsure_streak(recent) + 1 >= cfg["max_unsure_turns"]:
            outcome.update(source="handoff", reply=HANDOFF, handoff=True, reason="unsure")
    with db.session() as s:
        session = _session(s, s.get(Bot, bot_id), session_id, customer_id, anonymous) if session_id else None
        if session is None:
            session = ChatSession(id=uuid.uuid4().hex, bot_id=bot_id, customer_id=customer_id, status="open",
                                  created_at=utcnow(), updated_at=utcnow())
            s.add(session)
        hit, composed = outcome["faq"], outcome["composed"]
        wrote = outcome["source"] == "llm"
        turn = Turn(session_id=session.id, text=text, reply=outcome["reply"], source=outcome["source"],
                    intent=intent, confidence=round(confidence, 6), faq_id=hit and hit["id"],
                    faq_score=hit and hit["score"], handoff=outcome["handoff"], created_at=utcnow(),
                    model=composed.generated.model_ref if wrote else None,
                    citations=composed.citations if wrote else None)
        s.add(turn)
        s.flush()
        ticket_id = None
        if outcome["reason"]:
            ticket = Ticket(bot_id=bot_id, session_id=session.id, turn_id=turn.id, reason=outcome["reason"],
                            status="open", question=text, created_at=utcnow())
            s.add(ticket)
            s.flush()
            ticket_id = ticket.id
            session.status = "handed_off"
        elif waiting:
            ticket_id = s.scalar(select(Ticket.id).where(Ticket.session_id == session.id, Ticket.status == "open")
                                 .order_by(Ticket.id.desc()).limit(1))
        if not sure:
            enqueue(s, dataset=dataset, text=text, reason="low_confidence", suggested=intent,
                    confidence=confidence, choices=labels, turn_id=turn.id)
        session.updated_at = utcnow()
        reply = {"session_id": session.id, "reply": outcome["reply"], "intent": intent,
                 "confidence": round(confidence, 4), "handoff": outcome["handoff"], "turn_id": turn.id,
                 "source": outcome["source"]}
        if ticket_id is not None:
            reply["ticket_id"] = ticket_id
        if hit:
            reply["faq"] = {"id": hit["id"], "question": hit["question"], "score": hit["score"]}
        if wrote:
            reply["citations"] = composed.citations
        if composed is not None:   # what the generative model read and wrote: metered to the caller
            g = composed.generated
            reply["llm"] = {"model": g.model_ref, "prompt_tokens": g.prompt_tokens,
                            "completion_tokens": g.completion_tokens, "finish_reason": g.finish_reason,
                            "estimated": g.estimated, "given": composed.given}
        return reply


def check_text(text, settings: Settings) -> str:
    """The message, stripped; empty or over-long messages are refused with the fix."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError('text is empty; send {"text": "your message"} with visible characters')
    if len(text) > settings.max_input_chars:
        raise ValidationError(f"text has {len(text)} characters; the limit is {settings.max_input_chars}")
    return text.strip()


def _unsure_streak(sources: list[str]) -> int:
    """Unsure replies in a row at the end of the session (`sources` newest first)."""
    streak = 0
    for source in sources:
        if source != "fallback":
            break
        streak += 1
    return streak


def _session(s, bot: Bot, session_id: str, customer_id: int | None, anonymous: bool = False) -> ChatSession:
    """The session, if `customer_id` (None: any) may see it; `anonymous` callers (the storefront's
    visitors) only ever see sessions that no customer owns."""
    session = s.get(ChatSession, session_id) if isinstance(session_id, str) else None
    # another bot's or another customer's session is reported as missing, not as forbidden
    if (session is None or session.bot_id != bot.id or (customer_id is not None and session.customer_id != customer_id)
            or (anonymous and session.customer_id is not None)):
        raise NotFound(f'no session "{session_id}" with bot "{bot.name}"; omit session_id to start one')
    return session


def rate_turn(bot_name: str, turn_id: int, rating, *, customer_id: int | None = None,
              session_id: str | None = None, anonymous: bool = False, settings: Settings | None = None) -> dict:
    """Rate a reply 1..5 or "up"/"down"; a low rating puts the message in the labelling queue.

    With `session_id` (the anonymous chat widget), the turn must belong to that session.
    """
    settings = settings or get_settings()
    value = RATINGS.get(rating) if isinstance(rating, str) else rating
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
        raise ValidationError(f'rating must be 1..5 or "up"/"down", got {rating!r}')
    from modelshop.registry import Registry

    db = get_database(settings)
    with db.session() as s:
        intent_model = _bot(s, bot_name).intent_model
    labels = Registry.from_settings(settings).get(intent_model).labels
    with db.session() as s:
        bot = _bot(s, bot_name)
        turn = s.get(Turn, turn_id)
        if turn is None or (session_id is not None and turn.session_id != session_id):
            raise NotFound(f'no turn {turn_id} with bot "{bot_name}"' + (" in this session" if session_id else ""))
        _session(s, bot, turn.session_id, customer_id, anonymous)
        turn.rating, turn.rated_at = value, utcnow()
        item = None
        if value <= settings.label_down_rating:
            item = enqueue(s, dataset=bot.dataset, text=turn.text, reason="down_rated", suggested=turn.intent,
                           confidence=turn.confidence, choices=labels, turn_id=turn.id)
        return {"turn_id": turn.id, "rating": value, "queued": item is not None,
                "label_item_id": item.id if item else None}


# --- sessions and tickets (the console and the chat widget) --------------------------------------

def get_session(bot_name: str, session_id: str, *, customer_id: int | None = None,
                anonymous: bool = False, settings: Settings | None = None) -> dict:
    """The conversation so far: user messages, bot replies and the answers of people, in order."""
    with get_database(settings).session() as s:
        session = _session(s, _bot(s, bot_name), session_id, customer_id, anonymous)
        return {"session_id": session.id, "status": session.status, "messages": _transcript(s, session.id)}


def _transcript(s, session_id: str) -> list[dict]:
    messages = []
    for t in s.scalars(select(Turn).where(Turn.session_id == session_id).order_by(Turn.id)):
        said = {"role": "bot", "text": t.reply, "turn_id": t.id, "source": t.source, "at": t.created_at.isoformat()}
        if t.citations is not None:
            said["citations"] = t.citations
        messages += [{"role": "user", "text": t.text, "turn_id": t.id, "at": t.created_at.isoformat()}, said]
    for k in s.scalars(select(Ticket).where(Ticket.session_id == session_id, Ticket.reply.is_not(None))):
        messages.append({"role": "agent", "text": k.reply, "ticket_id": k.id, "by": k.answered_by,
                         "at": k.answered_at.isoformat()})
    return sorted(messages, key=lambda m: m["at"])


def ticket_dict(s, ticket: Ticket, with_messages: bool = True) -> dict:
    out = {"id": ticket.id, "bot": s.get(Bot, ticket.bot_id).name, "session_id": ticket.session_id,
           "turn_id": ticket.turn_id, "reason": ticket.reason, "status": ticket.status,
           "question": ticket.question, "reply": ticket.reply, "answered_by": ticket.answered_by,
           "created_at": ticket.created_at.isoformat(),
           "answered_at": ticket.answered_at.isoformat() if ticket.answered_at else None}
    if with_messages:
        out["messages"] = _transcript(s, ticket.session_id)
    return out


def list_tickets(status: str | None = "open", bot: str | None = None, *, settings: Settings | None = None,
                 db: Database | None = None) -> list[dict]:
    """Tickets (open ones by default), oldest first, each with its conversation."""
    if status not in (None, "open", "answered"):
        raise ValidationError(f'status must be open or answered, got "{status}"'
                              f'{did_you_mean(status, ["open", "answered"])}')
    db = db or get_database(settings)
    with db.session() as s:
        q = select(Ticket).order_by(Ticket.id)
        if status:
            q = q.where(Ticket.status == status)
        if bot:
            q = q.where(Ticket.bot_id == _bot(s, bot).id)
        return [ticket_dict(s, t) for t in s.scalars(q)]


def reply_ticket(ticket_id: int, text: str, *, by: str = "operator", settings: Settings | None = None,
                 db: Database | None = None) -> dict:
    """A person answers a ticket; the answer joins the session and the bot takes over again."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError('reply text is empty; send {"text": "your answer"}')
    db = db or get_database(settings)
    with db.session() as s:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None:
            raise NotFound(f"no ticket {ticket_id}; list open ones with `modelshop apps tickets list`")
        if ticket.status != "open":
            raise Conflict(f"ticket {ticket_id} was already answered by {ticket.answered_by}")
        ticket.status, ticket.reply, ticket.answered_by, ticket.answered_at = "answered", text.strip(), by, utcnow()
        s.get(ChatSession, ticket.session_id).status = "open"
        return ticket_dict(s, ticket)
