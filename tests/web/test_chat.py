"""The storefront's chat widget and its routes (anonymous visitors, the storefront's limits), and the
console's labelling page: a thumbs-down lands in the queue, a person labels it, the next dataset
version has it."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from fastapi.testclient import TestClient

from modelshop.apps import feedback
from tests.support import ADMIN_KEY, SHOP_FAQ
from tests.web.helpers import BOT, build_app, csrf, login


def test_no_bot_no_widget(app):
    with TestClient(app) as client:
        assert 'id="chat-launch"' not in client.get("/store").text
        r = client.post("/store/chat", json={"text": "hello"})
        assert r.status_code == 404 and r.json()["error"].startswith("the storefront has no chat bot; mark one with")


def test_chat_answers_from_the_faq_and_a_thumbs_down_is_queued(bot_settings):
    with TestClient(build_app(bot_settings)) as client:
        for page in ("/store", "/store/support"):
            text = client.get(page).text
            assert 'id="chat-launch"' in text and f'data-bot="{BOT}"' in text, page
        r = client.post("/store/chat", json={"text": "how can I send back something I bought?"})
        assert r.status_code == 200, r.text
        said = r.json()
        assert (said["source"], said["reply"], said["handoff"]) == ("faq", SHOP_FAQ[0][2], False)
        assert said["faq_question"] == SHOP_FAQ[0][1] and r.headers["cache-control"] == "no-store"
        def rate(body):
            return client.post("/store/chat/rating", json=body)

        other = client.post("/store/chat", json={"text": "Do you sell gift cards?"}).json()
        assert other["session_id"] != said["session_id"]
        # a turn of another conversation cannot be rated from this one
        wrong = rate({"session_id": other["session_id"], "turn_id": said["turn_id"], "rating": "down"})
        assert wrong.status_code == 404 and "in this session" in wrong.json()["error"]
        down = rate({"session_id": said["session_id"], "turn_id": said["turn_id"], "rating": "down"})
        assert down.status_code == 200 and down.json() == {"turn_id": said["turn_id"], "rating": "down", "queued": True}
        convo = client.get("/store/chat/session", params={"session_id": said["session_id"]}).json()
        assert [m["role"] for m in convo["messages"]] == ["user", "bot"]
    queued = [i for i in feedback.pending(BOT, settings=bot_settings) if i["turn_id"] == said["turn_id"]]
    assert queued and queued[0]["reason"] == "down_rated" and queued[0]["choices"] == ["bad", "good"]


def test_chat_bad_input_is_a_one_line_4xx(bot_settings):
    with TestClient(build_app(bot_settings)) as client:
        def post(path, **kw):
            r = client.post(path, **kw)
            body = r.json()
            assert set(body) == {"error", "error_type"} and "\n" not in body["error"], body
            return r.status_code, body["error"]

        assert post("/store/chat", content=b"not json", headers={"content-type": "application/json"}) == (
            422, 'send JSON: {"text": "...", "session_id": "..." (omit it for a new conversation)}')
        assert post("/store/chat", json=["hi"])[0] == 422
        assert post("/store/chat", json={"txt": "hi"})[1].startswith("text: type a message")
        assert post("/store/chat", json={"text": "   "}) == (422, "type a message first")
        assert post("/store/chat", json={"text": "x" * 501})[1].startswith("the chat takes at most 500 characters")
        assert post("/store/chat", json={"text": "hi", "session_id": 5})[1].startswith("session_id:")
        code, error = post("/store/chat", json={"text": "hi", "session_id": "nope"})
        assert code == 404 and "omit session_id to start one" in error
        assert post("/store/chat/rating", json={"turn_id": 1, "rating": "down"})[1].startswith("session_id:")
        assert post("/store/chat/rating", json={"session_id": "s", "turn_id": "1", "rating": "down"})[1] \
            .startswith("turn_id:")
        assert post("/store/chat/rating", json={"session_id": "s", "turn_id": 1, "rating": "meh"}) == (
            422, "rating must be \"up\" or \"down\", got 'meh'")
        assert client.get("/store/chat/session").status_code == 422


def test_chat_has_its_own_rate_limit(bot_settings):
    with TestClient(build_app(bot_settings)) as client:
        codes = [client.post("/store/chat", json={"text": "Do you ship abroad?"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        busy = client.post("/store/chat", json={"text": "Do you ship abroad?"})
        assert busy.headers["retry-after"] and "the chat allows 3 messages a minute" in busy.json()["error"]
        # the playground keeps its own tries
        assert client.post("/store/playground", json={"model": "support", "text": "love it"}).status_code == 200


def test_console_labels_an_item_into_the_next_dataset_version(bot_settings):
    item = feedback.add_item(BOT, "my parcel arrived broken", choices=["bad", "good"], settings=bot_settings)
    with TestClient(build_app(bot_settings)) as client:
        assert client.get("/console/labels", follow_redirects=False).headers["location"].startswith("/console/login")
        login(client, ADMIN_KEY)
        page = client.get("/console/labels").text
        assert 'href="/console/labels"' in page and "my parcel arrived broken" in page
        token = csrf(page)
        refused = client.post(f"/console/labels/{item['id']}", data={"label": "bad"})
        assert refused.status_code == 403
        bad = client.post(f"/console/labels/{item['id']}", data={"label": "awful", "csrf": token})
        assert bad.status_code == 422 and 'is not one of the labels bad, good' in html.unescape(bad.text)
        done = client.post(f"/console/labels/{item['id']}", data={"label": "bad", "csrf": token})
        assert done.status_code == 200 and f'item {item["id"]} labelled "bad"' in html.unescape(done.text)
        after = client.get("/console/labels").text
        assert "my parcel arrived broken" not in after and "1 labelled since its last version" in after
        exported = client.post(f"/console/datasets/{BOT}/export", data={"csrf": token})
        assert exported.status_code == 200 and f"dataset {BOT} version 1: 1 rows (1 newly labelled)" in exported.text
    version = feedback.list_datasets(BOT, settings=bot_settings)[-1]
    rows = [json.loads(line) for line in Path(version["path"]).read_text(encoding="utf-8").splitlines()]
    assert rows == [{"text": "my parcel arrived broken", "label": "bad"}]


def test_a_hand_off_in_the_chat_is_answered_in_the_console(bot_settings):
    with TestClient(build_app(bot_settings)) as client:
        said = client.post("/store/chat", json={"text": "Can I talk to a human please?"}).json()
        assert said["handoff"] is True and said["source"] == "handoff"
        login(client, ADMIN_KEY)
        page = client.get("/console/tickets").text
        assert 'href="/console/tickets"' in page and "Can I talk to a human please?" in page
        ticket = re.search(r'class="card ticket" data-id="(\d+)"', page).group(1)
        empty = client.post(f"/console/tickets/{ticket}/reply", data={"text": " ", "csrf": csrf(page)})
        assert empty.status_code == 422 and "reply text is empty" in empty.text
        done = client.post(f"/console/tickets/{ticket}/reply", data={"text": "Hi, Anna here.", "by": "anna",
                                                                     "csrf": csrf(page)})
        assert done.status_code == 200 and f"ticket {ticket} answered" in done.text
        again = client.post(f"/console/tickets/{ticket}/reply", data={"text": "again", "csrf": csrf(page)})
        assert again.status_code == 409
        convo = client.get("/store/chat/session", params={"session_id": said["session_id"]}).json()
        assert convo["status"] == "open" and convo["messages"][-1]["role"] == "agent"
        assert (convo["messages"][-1]["text"], convo["messages"][-1]["by"]) == ("Hi, Anna here.", "anna")
        assert "no-tickets" in client.get("/console/tickets").text


def test_a_customers_api_session_is_not_reachable_from_the_storefront(bot_settings):
    from modelshop.apps import support

    owned = support.handle_message(BOT, "how can I send back something I bought?", customer_id=7, settings=bot_settings)
    with TestClient(build_app(bot_settings)) as client:
        sid, turn = owned["session_id"], owned["turn_id"]
        for r in (client.post("/store/chat", json={"text": "and my order?", "session_id": sid}),
                  client.get("/store/chat/session", params={"session_id": sid}),
                  client.post("/store/chat/rating", json={"session_id": sid, "turn_id": turn, "rating": "down"})):
            assert r.status_code == 404, r.text
            assert r.json()["error"].startswith(f'no session "{sid}"') or "no turn" in r.json()["error"]
    # the customer still reaches it through the API
    assert support.get_session(BOT, sid, customer_id=7, settings=bot_settings)["session_id"] == sid


def test_ratings_and_session_reads_have_limits_of_their_own(bot_settings):
    from modelshop.web.chat import SESSION_READS_RPM

    settings = bot_settings.model_copy(update={"storefront_demo_rpm": 2, "storefront_address_rpm": 40})
    with TestClient(build_app(settings)) as client:
        client.get("/store")  # a visitor with its signed cookie
        said = client.post("/store/chat", json={"text": "how can I send back something I bought?"}).json()
        body = {"session_id": said["session_id"], "turn_id": said["turn_id"], "rating": "up"}
        codes = [client.post("/store/chat/rating", json=body).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # storefront_demo_rpm ratings a minute, each
        busy = client.post("/store/chat/rating", json=body)
        assert "the chat rating allows 2 ratings a minute" in busy.json()["error"] and busy.headers["retry-after"]
        params = {"session_id": said["session_id"]}
        reads = [client.get("/store/chat/session", params=params).status_code for _ in range(SESSION_READS_RPM + 1)]
        assert reads == [200] * SESSION_READS_RPM + [429]
        assert "the chat session allows 30 reads a minute" in client.get("/store/chat/session", params=params).text
        # a visitor that drops its cookie is its address: the address's budget is already half spent
        client.cookies.clear()
        assert [client.get("/store/chat/session", params=params).status_code for _ in range(11)] == [200] * 10 + [429]
        r = client.get("/store/chat/session", params=params)
        assert "40 reads a minute from one address" in r.json()["error"]
