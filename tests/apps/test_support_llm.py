"""The support bot with a generative model (`apps bot create --llm`): replies composed from the top FAQ
answers (the prompt carries them under their ids, the reply's citations name only answers it was given),
metered to the caller in input and output tokens, with the hand-off rules still first and today's
behaviour without --llm. The tiny random Llama writes the replies (it never cites on its own), and the
stand-in provider plays an upstream model behind the gateway."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from modelshop.apps import compose, support
from modelshop.apps.tables import Turn
from modelshop.db import get_database
from modelshop.errors import NotFound, ValidationError
from modelshop.serve.direct_models import DirectModels
from tests.standin import PROMPT_TOKENS, WORDS, Provider
from tests.support import ACTOR, SHOP_FAQ, bearer, live_server, make_settings

RETURNS = "how can I send back something I bought?"
ANSWERS = [{"id": i, "question": q, "answer": a, "score": 0.9} for i, q, a in SHOP_FAQ]
OFF_TOPIC = "What is the boiling point of mercury in kelvin?"
COMPLAINT = ("I'm unhappy with how my issue was handled, your agent was rude and closed my ticket without "
             "solving anything")
TOKEN_PLAN = {"code": "bot-tokens", "currency": "USD", "charges": [
    {"metric": "requests", "model": "unit", "unit_price": "0.001"},
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002"}]}


@pytest.fixture(scope="module")
def provider():
    p = Provider()
    with live_server(p.app) as base:
        p.base = base + "/v1"
        yield p


@pytest.fixture(scope="module")
def shop(tmp_path_factory, shop_faq, tiny_llama, provider):
    """A billing home with the shop FAQ, the tfidf intents, the tiny Llama ("tiny"), an upstream model whose
    provider fails ("down", falling back to "up") and one customer on a per-token plan: (settings, key, id)."""
    from modelshop.apps.faq import build_kb
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.demo import DATA
    from modelshop.llm.registry import add_local
    from modelshop.llm.upstream import add_upstream
    from modelshop.train import TrainConfig, run_training

    settings = make_settings(tmp_path_factory.mktemp("bot-llm") / "home", llm_processes=False, serve_gate="billing",
                             serve_workers=1)
    build_kb(shop_faq, "shop", settings=settings)
    run_training(DATA, name="intents", cfg=TrainConfig(base_model="tfidf", validation_fraction=0.0), settings=settings)
    add_local("tiny", str(tiny_llama), settings=settings)
    add_upstream("up", provider.base, "ok", settings=settings)
    add_upstream("down", provider.base, "fail-500", fallbacks=["up"], settings=settings)
    db = get_database(settings)
    db.migrate()
    create_plan(db, parse_plan(TOKEN_PLAN), actor=ACTOR)
    customer = create_customer(db, "Shop Ltd", TOKEN_PLAN["code"], actor=ACTOR)["id"]
    return settings, create_key(db, customer, actor=ACTOR)["key"], customer


def ledger(settings, customer: int) -> list:
    from modelshop.billing.tables import UsageEvent

    with get_database(settings).session() as s:
        return list(s.scalars(select(UsageEvent).where(UsageEvent.customer_id == customer).order_by(UsageEvent.id)))


# --- the prompt and the citations -----------------------------------------------------------------

def test_the_prompt_carries_the_retrieved_answers_under_their_ids_best_first():
    [message] = compose.build_prompt(RETURNS, ANSWERS[:3], "en")
    text = message["content"]
    assert message["role"] == "user" and text.endswith(f"Customer: {RETURNS}")
    places = [text.index(f"[faq:{a['id']}] {a['question']}\n{a['answer']}") for a in ANSWERS[:3]]
    assert places == sorted(places)                            # in retrieval order, each answer under its id
    assert "[faq:hours]" not in text                           # only the answers retrieved
    assert "Write your reply in English." in text and "like [faq:returns]" in text
    assert "Write your reply in Chinese." in compose.build_prompt("我想退货", ANSWERS[:1], "zh")[0]["content"]
    assert "in the language of the customer's message" in compose.build_prompt("??", ANSWERS[:1], "und")[0]["content"]
    with pytest.raises(ValueError, match="at least one retrieved answer"):
        compose.build_prompt(RETURNS, [], "en")


def test_citations_name_only_answers_the_model_was_given():
    given = ["returns", "abroad"]
    assert compose.cite("Use the label [faq:returns]. Or [faq:made-up] not. Again [ faq:returns ]", given) == (
        "Use the label [faq:returns]. Or not. Again [faq:returns]", ["returns"])
    assert compose.cite("[faq:abroad] and [faq:returns]", given) == ("[faq:abroad] and [faq:returns]",
                                                                     ["abroad", "returns"])
    # a reply that cites nothing (or only ids it was not given) lists the answers it was given
    assert compose.cite("We ship to Norway. [faq:hours]", given) == (
        "We ship to Norway. [faq:returns] [faq:abroad]", given)
    assert compose.cite("  [faq:nope] ", given) == ("", [])


def test_budgets_follow_the_models_context():
    assert compose.budgets(512) == (384, 128) and compose.budgets(8192) == (1536, 256)
    assert compose.budgets(None) == (1536, 256) and compose.budgets(512, 64) == (448, 64)
    with pytest.raises(ValidationError, match="use at most 255"):
        compose.budgets(512, 300)
    with pytest.raises(ValidationError, match="at least 1"):
        compose.budgets(512, 0)


def test_answers_are_dropped_from_the_end_until_the_prompt_fits(shop):
    settings = shop[0]
    models = DirectModels(settings)
    sizes = [models.count_tokens([compose.build_prompt(RETURNS, ANSWERS[:n], "en")[0]["content"]], "tiny",
                                 task="generate") for n in (1, 2, 3)]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    two = compose.compose(models, "tiny", RETURNS, ANSWERS[:3], prompt_tokens=sizes[1], max_tokens=6)
    assert two.given == ["returns", "shipping-time"] and two.generated.prompt_tokens == sizes[1]
    assert two.generated.completion_tokens <= 6 and two.generated.model_ref == "tiny:1"
    assert compose.compose(models, "tiny", RETURNS, ANSWERS[:3], prompt_tokens=sizes[0] - 1, max_tokens=6) is None


# --- the bot --------------------------------------------------------------------------------------

def test_a_generated_reply_cites_what_it_was_given_and_is_metered_to_the_caller(shop):
    settings, key, customer = shop
    support.create_bot("genie", "intents", "shop", llm="tiny", llm_max_tokens=24, replace=True, settings=settings)
    from modelshop.platform import build_app

    before = len(ledger(settings, customer))
    with TestClient(build_app(settings)) as client:
        r = client.post("/apps/support/genie/message", json={"text": RETURNS}, headers=bearer(key))
        assert r.status_code == 200, r.text
        out = r.json()
        session = client.get(f"/apps/support/genie/sessions/{out['session_id']}", headers=bearer(key)).json()
    assert out["source"] == "llm" and out["handoff"] is False and out["faq"]["id"] == "returns"
    g = out["llm"]
    assert g["model"] == "tiny:1" and g["given"][0] == "returns" and 0 < g["completion_tokens"] <= 24
    # citations: ids of answers it was given, each one written in the reply; nothing else cited
    assert out["citations"] and set(out["citations"]) <= set(g["given"])
    assert all(f"[faq:{c}]" in out["reply"] for c in out["citations"])
    cited = {c.split("]")[0] for c in out["reply"].split("[faq:")[1:]}
    assert cited == set(out["citations"])
    # the model read the prompt built from the given answers, counted by its own tokenizer
    given = [next(a for a in ANSWERS if a["id"] == i) for i in g["given"]]
    prompt = compose.build_prompt(RETURNS, given, "en")[0]["content"]      # the message's language: English
    assert g["prompt_tokens"] == DirectModels(settings).count_tokens([prompt], "tiny", task="generate")

    [event] = ledger(settings, customer)[before:]             # one call, to the caller, in tokens
    assert event.model == "bot.genie" and event.requests == 1
    assert (event.input_tokens, event.output_tokens) == (g["prompt_tokens"], g["completion_tokens"])
    intent = DirectModels(settings).count_tokens([RETURNS], "intents")
    assert event.tokens == intent + g["prompt_tokens"] + g["completion_tokens"]
    assert r.headers["x-input-tokens"] == str(g["prompt_tokens"])
    with get_database(settings).session() as s:
        turn = s.get(Turn, out["turn_id"])
        assert (turn.source, turn.model, turn.citations, turn.faq_id) == ("llm", "tiny:1", out["citations"], "returns")
    assert session["messages"][1]["citations"] == out["citations"]


def test_hand_off_rules_and_unsure_retrieval_still_win_and_generate_nothing(shop):
    settings, key, customer = shop
    support.create_bot("genie2", "intents", "shop", llm="tiny", llm_max_tokens=8, replace=True, settings=settings)
    from modelshop.platform import build_app

    before = len(ledger(settings, customer))
    app = build_app(settings)
    with TestClient(app) as client:
        metrics = app.state.modelshop.service.metrics.registry

        def generated() -> float:
            return metrics.get_sample_value("modelshop_llm_output_tokens_total", {"model": "tiny:1"}) or 0.0

        def say(text):
            r = client.post("/apps/support/genie2/message", json={"text": text}, headers=bearer(key))
            assert r.status_code == 200, r.text
            return r.json()

        start = generated()
        asked = say("Can I talk to a human please?")
        angry = say(COMPLAINT)
        unsure = say(OFF_TOPIC)
        assert generated() == start                                  # the engine wrote nothing
        answered = say(RETURNS)
        assert generated() == start + answered["llm"]["completion_tokens"]
    assert (asked["source"], asked["handoff"], asked["ticket_id"] > 0) == ("handoff", True, True)
    assert (angry["source"], angry["intent"], angry["handoff"]) == ("handoff", "complaint", True)
    assert unsure["source"] in ("intent", "fallback") and "faq" not in unsure   # no confident answer
    assert not any("llm" in o or "citations" in o for o in (asked, angry, unsure))
    assert answered["source"] == "llm"
    events = ledger(settings, customer)[before:]
    assert [(e.input_tokens, e.output_tokens) for e in events[:3]] == [(0, 0)] * 3
    assert events[3].input_tokens == answered["llm"]["prompt_tokens"] > 0


def test_without_llm_the_bot_answers_as_before_and_llm_can_be_set_and_unset(shop):
    settings = shop[0]
    made = support.create_bot("plain", "intents", "shop", replace=True, settings=settings)
    assert made["llm"] is None and not any(k.startswith("llm_") for k in made)
    before = support.handle_message("plain", RETURNS, settings=settings)
    assert set(before) == {"session_id", "reply", "intent", "confidence", "handoff", "turn_id", "source", "faq"}
    assert (before["source"], before["reply"], before["faq"]["id"]) == ("faq", SHOP_FAQ[0][2], "returns")

    on = support.set_llm("plain", "tiny", max_tokens=8, settings=settings)
    assert (on["llm"], on["llm_max_tokens"], on["llm_prompt_tokens"], on["llm_top_k"]) == ("tiny", 8, 504, 3)
    composed = support.handle_message("plain", RETURNS, settings=settings)      # DirectModels: in this process
    assert composed["source"] == "llm" and composed["llm"]["completion_tokens"] <= 8
    assert composed["reply"] != SHOP_FAQ[0][2] and composed["citations"]

    off = support.set_llm("plain", None, settings=settings)
    assert off == made                             # every other setting kept
    after = support.handle_message("plain", RETURNS, settings=settings)
    assert {k: after[k] for k in ("reply", "source", "faq", "intent")} == \
        {k: before[k] for k in ("reply", "source", "faq", "intent")}


def test_an_upstream_model_composes_through_the_gateway_with_its_fallback_and_its_usage(shop, provider):
    settings, key, customer = shop
    support.create_bot("relay", "intents", "shop", llm="down", replace=True, settings=settings)
    from modelshop.platform import build_app

    before = len(ledger(settings, customer))
    seen = len(provider.seen)
    with TestClient(build_app(settings)) as client:
        r = client.post("/apps/support/relay/message", json={"text": RETURNS}, headers=bearer(key))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["source"] == "llm" and out["llm"]["model"] == "up:1"          # "down" failed, its fallback answered
    sent = [s["body"] for s in provider.seen[seen:]]
    assert [b["model"] for b in sent] == ["fail-500", "ok"]
    prompt = sent[-1]["messages"][0]["content"]
    assert all(f"[faq:{i}]" in prompt for i in out["llm"]["given"]) and SHOP_FAQ[0][2] in prompt
    assert out["reply"].startswith("w0 w1") and out["citations"] == out["llm"]["given"]   # the ids it was given
    [event] = ledger(settings, customer)[before:]
    assert (event.input_tokens, event.output_tokens) == (PROMPT_TOKENS, WORDS)    # the provider's own usage
    assert event.model == "bot.relay" and event.estimated is False


def test_the_direct_road_names_the_fix_for_an_upstream_model(shop):
    with pytest.raises(ValidationError, match="upstream model: it is called through the server's gateway"):
        DirectModels(shop[0]).generate("up", [{"role": "user", "content": "hi"}], max_tokens=4)


def test_the_generative_model_is_checked(shop):
    settings = shop[0]
    with pytest.raises(NotFound, match='no model named "tin" \\(did you mean "tiny"\\?\\)'):
        support.create_bot("g", "intents", "shop", llm="tin", settings=settings)
    with pytest.raises(ValidationError, match='"intents:1" is a classifier, not a generative model'):
        support.create_bot("g", "intents", "shop", llm="intents", settings=settings)
    with pytest.raises(ValidationError, match="pass kb"):
        support.create_bot("g", "intents", llm="tiny", settings=settings)
    with pytest.raises(ValidationError, match="llm_max_tokens needs a generative model"):
        support.create_bot("g", "intents", "shop", llm_max_tokens=10, settings=settings)
    with pytest.raises(ValidationError, match="leaves too little of the model's context of 512"):
        support.create_bot("g", "intents", "shop", llm="tiny", llm_max_tokens=400, settings=settings)
    with pytest.raises(NotFound, match='no bot named "nobot"'):
        support.set_llm("nobot", "tiny", settings=settings)


def test_the_commands(shop, monkeypatch, capsys):
    from modelshop.cli import main
    from modelshop.settings import get_settings

    settings = shop[0]
    monkeypatch.setenv("MODELSHOP_HOME", str(settings.home))
    monkeypatch.setenv("MODELSHOP_PROGRESS", "false")
    get_settings.cache_clear()
    try:
        def run(*args):
            capsys.readouterr()
            main(list(args))
            return capsys.readouterr().out

        made = json.loads(run("apps", "bot", "create", "--name", "clibot", "--intent-model", "intents", "--kb", "shop",
                              "--llm", "tiny", "--llm-max-tokens", "16", "--json"))
        assert (made["llm"], made["llm_max_tokens"]) == ("tiny", 16)
        assert json.loads(run("apps", "bot", "update", "clibot", "--llm", "none", "--json"))["llm"] is None
        assert "composed by tiny (up to 128 tokens)" in run("apps", "bot", "update", "clibot", "--llm", "tiny")
        assert "llm tiny" in next(line for line in run("apps", "bot", "list").splitlines() if line.startswith("clibot"))
    finally:
        get_settings.cache_clear()
