"""The support bot: a whole conversation over HTTP (metered by the billing gate), its hand-off rules,
and the loop back from a down-rated answer to a dataset version and a retrained model's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelshop.apps import feedback, support
from modelshop.errors import Conflict, NotFound, ValidationError
from tests.support import AUTH, SHOP_FAQ

BILLING_REPLY = "Sorry about the charge. Our billing team refunds double charges within 5 working days."


@pytest.fixture
def app(world):
    from modelshop.billing import BillingGate
    from modelshop.platform import build_app

    return build_app(world, gate=BillingGate(world))  # mounts the apps and billing routers


def _customer_key(client, models: list[str]) -> dict:
    plan = {"code": "apps", "currency": "USD",
            "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]}
    assert client.post("/admin/plans", json=plan, headers=AUTH).status_code in (200, 201)
    customer = client.post("/admin/customers", json={"name": "Shop Ltd", "plan": "apps"}, headers=AUTH).json()
    key = client.post("/admin/keys", json={"customer_id": customer["id"], "models": models}, headers=AUTH).json()
    return {"Authorization": f"Bearer {key['key']}"}


def test_a_conversation_and_the_feedback_loop(world, app, tmp_path):
    support.create_bot("helper", "intents", "shop", replies={"billing": BILLING_REPLY}, replace=True, settings=world)
    with TestClient(app) as client:
        me = _customer_key(client, ["bot.helper", "faq.shop"])
        say = lambda body: client.post("/apps/support/helper/message", json=body, headers=me)  # noqa: E731

        first = say({"text": "how can I send back something I bought?"})
        assert first.status_code == 200, first.text
        r1 = first.json()
        assert r1["source"] == "faq" and r1["reply"] == SHOP_FAQ[0][2] and r1["handoff"] is False
        assert r1["faq"]["id"] == "returns" and "ticket_id" not in r1 and first.headers["x-compute-characters"] == "39"
        session = r1["session_id"]

        r2 = say({"session_id": session, "text": "I was charged twice for my subscription this month"}).json()
        assert (r2["source"], r2["intent"], r2["reply"], r2["handoff"]) == ("intent", "billing", BILLING_REPLY, False)
        assert r2["confidence"] >= 0.5 and r2["session_id"] == session

        r3 = say({"session_id": session, "text": "Can I talk to a human please?"}).json()
        assert r3["handoff"] is True and r3["source"] == "handoff" and r3["ticket_id"]
        r4 = say({"session_id": session, "text": "hello? anyone there?"}).json()
        assert (r4["source"], r4["handoff"], r4["ticket_id"]) == ("waiting", True, r3["ticket_id"])

        assert client.get("/apps/support/tickets", headers=me).status_code == 403       # operators only
        tickets = client.get("/apps/support/tickets", headers=AUTH).json()
        mine = [t for t in tickets if t["id"] == r3["ticket_id"]]
        assert mine and mine[0]["reason"] == "requested" and mine[0]["question"] == "Can I talk to a human please?"
        assert [m["role"] for m in mine[0]["messages"]] == ["user", "bot"] * 4
        answered = client.post(f"/apps/support/tickets/{r3['ticket_id']}/reply",
                               json={"text": "Hi, this is Anna. How can I help?", "by": "anna"}, headers=AUTH)
        assert answered.status_code == 200 and answered.json()["status"] == "answered"
        assert client.post(f"/apps/support/tickets/{r3['ticket_id']}/reply", json={"text": "again"},
                           headers=AUTH).status_code == 409
        convo = client.get(f"/apps/support/helper/sessions/{session}", headers=me).json()
        assert convo["status"] == "open" and convo["messages"][-1] == {
            **convo["messages"][-1], "role": "agent", "text": "Hi, this is Anna. How can I help?", "by": "anna"}
        r5 = say({"session_id": session, "text": "Do you ship abroad?"}).json()
        assert r5["source"] == "faq" and r5["handoff"] is False          # the bot is back

        rated = client.post(f"/apps/support/helper/turns/{r2['turn_id']}/rating", json={"rating": "down"}, headers=me)
        assert rated.status_code == 200 and rated.json()["queued"] is True
        assert client.post(f"/apps/support/helper/turns/{r5['turn_id']}/rating", json={"rating": 5},
                           headers=me).json()["queued"] is False
        usage = client.get("/v1/account/usage", headers=me).json()
        assert usage["totals"]["requests"] == 5                           # each message metered once
        assert client.post("/apps/support/other/message", json={"text": "hi"}, headers=me).status_code == 403

    queued = {i["turn_id"]: i for i in feedback.pending("helper", settings=world)}
    item = queued[r2["turn_id"]]
    assert item["reason"] == "down_rated" and item["suggested"] == "billing" and "refund" in item["choices"]
    feedback.label_item(item["id"], "refund", by="test", settings=world)
    from modelshop.demo import DATA

    v1 = feedback.export_dataset("helper", base=DATA, settings=world)
    rows = [json.loads(line) for line in Path(v1["path"]).read_text(encoding="utf-8").splitlines()]
    assert rows[-1] == {"text": "I was charged twice for my subscription this month", "label": "refund"}
    bundled = len(DATA.read_text(encoding="utf-8").splitlines())
    assert v1["version"] == 1 and v1["added"] >= 1 and v1["rows"] == bundled + v1["added"]

    from modelshop.registry import Registry
    from modelshop.train import TrainConfig, run_training

    trained = run_training(v1["path"], DATA, name="intents-v2", settings=world,
                           cfg=TrainConfig(base_model="tfidf", validation_fraction=0.0))
    card = Registry.from_settings(world).get(f"intents-v2:{trained['version']}")
    assert card.data_sha256 == v1["sha256"]
    assert feedback.dataset_for_sha256(card.data_sha256, settings=world)["path"] == v1["path"]

    later = support.handle_message("helper", "my card was billed two times for one order", settings=world)
    support.rate_turn("helper", later["turn_id"], 1, settings=world)
    new_item = next(i for i in feedback.pending("helper", settings=world) if i["turn_id"] == later["turn_id"])
    feedback.label_item(new_item["id"], "billing", settings=world)
    v2 = feedback.export_dataset("helper", settings=world)
    assert v2["version"] == 2 and v2["rows"] == v1["rows"] + v2["added"] and v2["sha256"] != v1["sha256"]
    with pytest.raises(Conflict, match="already in dataset version"):
        feedback.label_item(new_item["id"], "refund", settings=world)


def test_handoff_rules(world):
    support.create_bot("rules", "intents", "shop", replace=True, settings=world)
    zh = support.handle_message("rules", "我要转人工", settings=world)
    assert zh["handoff"] and zh["source"] == "handoff"
    angry = support.handle_message("rules", "I'm unhappy with how my issue was handled, your agent was rude and "
                                   "closed my ticket without solving anything", settings=world)
    assert angry["handoff"] and angry["intent"] == "complaint"
    reasons = {t["id"]: t["reason"] for t in support.list_tickets(bot="rules", settings=world)}
    assert reasons == {zh["ticket_id"]: "requested", angry["ticket_id"]: "intent:complaint"}

    support.create_bot("shy", "intents", None, min_confidence=0.99, max_unsure_turns=2, replace=True, settings=world)
    one = support.handle_message("shy", "hmm, about that thing from before", settings=world)
    assert (one["source"], one["handoff"]) == ("fallback", False)
    two = support.handle_message("shy", "the thing I mentioned", one["session_id"], settings=world)
    assert (two["source"], two["handoff"]) == ("handoff", True)
    assert support.list_tickets(bot="shy", settings=world)[0]["reason"] == "unsure"
    low = [i for i in feedback.pending("shy", settings=world) if i["turn_id"] in (one["turn_id"], two["turn_id"])]
    assert [i["reason"] for i in low] == ["low_confidence", "low_confidence"]


def test_bad_requests_are_one_line_errors(world, app):
    support.create_bot("helper2", "intents", "shop", replace=True, settings=world)
    with TestClient(app) as client:
        def post(path, body, headers=AUTH):
            r = client.post(path, json=body, headers=headers)
            return r.status_code, r.json()

        assert post("/apps/support/helper2/message", {"text": "hi"}, {})[0] == 401
        code, body = post("/apps/support/helpr2/message", {"text": "hi"})
        assert code == 404 and body["error"].startswith('no bot named "helpr2" (did you mean "helper2"?)')
        assert post("/apps/support/helper2/message", {"text": "  "}) == (422, {
            "error": 'text is empty; send {"text": "your message"} with visible characters',
            "error_type": "validation"})
        assert post("/apps/support/helper2/message", {"text": "hi", "session_id": "nope"})[0] == 404
        assert post("/apps/support/helper2/message", {"txt": "hi"})[0] == 422
        assert post("/apps/support/helper2/turns/1/rating", {"rating": 9})[0] == 422
        assert post("/apps/support/helper2/turns/999999/rating", {"rating": "up"})[0] == 404
        code, body = post("/apps/faq/nokb/ask", {"question": "hi"})
        assert code == 404 and "no knowledge base named" in body["error"]
        assert post("/apps/faq/shop/ask", {"question": ""})[1]["error"].startswith("question is empty")
        assert post("/apps/faq/shop/ask", {"question": "hi", "top_k": 0})[0] == 422
        ok = client.post("/apps/faq/shop/ask", json={"question": "Do you take PayPal?", "top_k": 2}, headers=AUTH)
        assert ok.status_code == 200 and ok.json()["answers"][0]["id"] == "payment" and len(ok.json()["answers"]) == 2
        assert post("/apps/support/tickets/999999/reply", {"text": "x"})[0] == 404


def test_bot_configuration_is_checked(world):
    with pytest.raises(NotFound, match='no model named "intent" \\(did you mean "intents"\\?\\)'):
        support.create_bot("b", "intent", "shop", settings=world)
    with pytest.raises(NotFound, match='no knowledge base named "shp"'):
        support.create_bot("b", "intents", "shp", settings=world)
    with pytest.raises(ValidationError, match='intent "complain" is not a label .*did you mean "complaint"'):
        support.create_bot("b", "intents", "shop", handoff_intents=["complain"], settings=world)
    support.create_bot("twice", "intents", settings=world, replace=True)
    with pytest.raises(Conflict, match="--replace"):
        support.create_bot("twice", "intents", settings=world)
    with pytest.raises(ValidationError, match="rating must be 1..5"):
        support.rate_turn("twice", 1, "meh", settings=world)
