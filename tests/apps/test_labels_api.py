"""The labelling queue over HTTP (admin only): list pending items, label one, export the next dataset
version, with one-line errors for bad input; and a rating bound to its session."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelshop.apps import feedback, support
from modelshop.errors import NotFound
from tests.support import AUTH


@pytest.fixture
def app(world):
    from modelshop.billing import BillingGate
    from modelshop.platform import build_app

    return build_app(world, gate=BillingGate(world))


def test_label_queue_over_http(world, app):
    support.create_bot("queue-bot", "intents", "shop", replace=True, settings=world)
    said = support.handle_message("queue-bot", "I was charged twice for my order", settings=world)
    assert support.rate_turn("queue-bot", said["turn_id"], "down", settings=world)["queued"]
    with TestClient(app) as client:
        assert client.get("/apps/labels").status_code == 401
        listed = client.get("/apps/labels", params={"dataset": "queue-bot"}, headers=AUTH)
        assert listed.status_code == 200, listed.text
        item = next(i for i in listed.json() if i["turn_id"] == said["turn_id"])
        assert item["reason"] == "down_rated" and item["status"] == "pending" and "refund" in item["choices"]

        def label(body, item_id=item["id"]):
            r = client.post(f"/apps/labels/{item_id}", json=body, headers=AUTH)
            return r.status_code, r.json()

        assert label({"label": "refnd"}) == (422, {
            "error": f'"refnd" is not one of the labels {", ".join(item["choices"])} (did you mean "refund"?); '
                     "pass --new to add a new label", "error_type": "validation"})
        assert label({"label": "refund"}, item_id=10**9)[0] == 404
        assert label({"labl": "refund"})[0] == 422
        assert label({"label": " "})[1]["error"].startswith("label is empty")
        code, done = label({"label": "billing", "by": "anna"})
        assert code == 200 and (done["status"], done["label"], done["labelled_by"]) == ("labelled", "billing", "anna")
        assert item["id"] not in [i["id"] for i in client.get("/apps/labels", headers=AUTH).json()]

        exported = client.post("/apps/datasets/queue-bot/export", headers=AUTH)
        assert exported.status_code == 200, exported.text
        assert exported.json()["version"] == 1 and exported.json()["added"] >= 1
        versions = client.get("/apps/datasets", params={"name": "queue-bot"}, headers=AUTH).json()
        assert [v["version"] for v in versions] == [1]
        again = client.post("/apps/datasets/queue-bot/export", headers=AUTH)
        assert again.status_code == 422 and "no newly labelled items" in again.json()["error"]


def test_the_queue_is_for_operators(world, app):
    with TestClient(app) as client:
        plan = {"code": "labels", "currency": "USD",
                "charges": [{"metric": "requests", "model": "unit", "unit_price": "0.01"}]}
        assert client.post("/admin/plans", json=plan, headers=AUTH).status_code in (200, 201)
        customer = client.post("/admin/customers", json={"name": "Labels Ltd", "plan": "labels"}, headers=AUTH).json()
        key = client.post("/admin/keys", json={"customer_id": customer["id"]}, headers=AUTH).json()["key"]
        me = {"Authorization": f"Bearer {key}"}
        for method, path in (("get", "/apps/labels"), ("post", "/apps/labels/1"), ("get", "/apps/datasets"),
                             ("post", "/apps/datasets/x/export")):
            r = client.request(method, path, headers=me, json={"label": "x"} if method == "post" else None)
            assert r.status_code == 403 and "for operators" in r.json()["error"], (path, r.text)


def test_a_rating_with_a_session_must_be_of_that_session(world):
    support.create_bot("session-bot", "intents", "shop", replace=True, settings=world)
    one = support.handle_message("session-bot", "where is my parcel?", settings=world)
    two = support.handle_message("session-bot", "where is my parcel?", settings=world)
    with pytest.raises(NotFound, match="in this session"):
        support.rate_turn("session-bot", one["turn_id"], "down", session_id=two["session_id"], settings=world)
    rated = support.rate_turn("session-bot", one["turn_id"], "down", session_id=one["session_id"], settings=world)
    queued = {i["turn_id"]: i["reason"] for i in feedback.pending("session-bot", settings=world)}
    assert rated["queued"] and queued[one["turn_id"]] == "down_rated"


def test_bot_create_storefront_marks_the_widgets_bot(world, monkeypatch, capsys):
    import json

    from modelshop.cli import main
    from modelshop.settings import get_settings

    monkeypatch.setenv("MODELSHOP_HOME", str(world.home))
    monkeypatch.setenv("MODELSHOP_PROGRESS", "false")
    get_settings.cache_clear()
    try:
        main(["apps", "bot", "create", "--name", "front-desk", "--intent-model", "intents", "--kb", "shop",
              "--storefront", "--replace", "--json"])
    except SystemExit as e:
        assert e.code == 0, capsys.readouterr().err
    finally:
        get_settings.cache_clear()
    made = json.loads(capsys.readouterr().out)
    assert made["name"] == "front-desk" and made["storefront"] is True
    assert support.storefront_bot(world) == "front-desk"
    support.create_bot("front-desk", "intents", "shop", replace=True, settings=world)  # reconfigured: unmarked
    assert support.storefront_bot(world) != "front-desk"
