"""The seam with the server: `build_app(settings, gate=BillingGate)` with the billing routers mounted.

A tfidf model is trained and served; a customer calls /predict over the in-process ASGI client.
"""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelshop.billing import BillingGate
from modelshop.cli import main
from modelshop.platform import build_app

ADMIN = {"Authorization": "Bearer seam-admin-" + "k" * 24}


def test_metered_predict_through_the_server(settings, tmp_path, capsys):
    rows = [{"text": t, "label": label} for t, label in
            [("great product", "good"), ("love it", "good"), ("awful", "bad"), ("terrible, broken", "bad")] * 10]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    main(["train", "--data", str(data), "--eval", str(data), "--base-model", "tfidf", "--name", "m", "--json"])
    capsys.readouterr()

    settings = settings.model_copy(update={"admin_key": SecretStr(ADMIN["Authorization"][7:])})
    gate = BillingGate(settings)
    app = build_app(settings, gate=gate)  # mounts the billing routers itself
    with TestClient(app) as client:
        plan = {"code": "payg", "currency": "USD", "charges": [{"metric": "requests", "model": "unit",
                                                                "unit_price": "0.01"}]}
        assert client.post("/admin/plans", json=plan, headers=ADMIN).status_code == 201
        customer = client.post("/admin/customers", json={"name": "S", "plan": "payg"}, headers=ADMIN).json()
        key = client.post("/admin/keys", json={"customer_id": customer["id"], "rpm": 3, "models": ["m"]},
                          headers=ADMIN).json()
        me = {"Authorization": f"Bearer {key['key']}"}
        replies = [client.post("/predict", json={"inputs": "great"},
                               headers={**me, **({"Idempotency-Key": "abc"} if i in (1, 2) else {})})
                   for i in range(5)]
        assert [r.status_code for r in replies] == [200, 200, 200, 200, 429]
        assert replies[2].headers.get("x-idempotent-replay") == "true" and replies[2].content == replies[1].content
        limited = replies[4]
        assert limited.json()["error_type"] == "rate_limited"
        assert limited.headers["RateLimit-Limit"] == "3" and limited.headers["RateLimit-Remaining"] == "0"
        assert 15 <= int(limited.headers["Retry-After"]) <= 20
        usage = client.get("/v1/account/usage", headers=me).json()
        assert usage["totals"]["requests"] == 3                  # the replay and the 429 are not metered
        assert client.get("/admin/customers", headers=me).status_code == 403


def test_a_call_that_fails_after_admission_gives_its_quota_hold_back(settings, tmp_path, capsys):
    """/explain admits the call, then refuses an unknown target: its hold on the quota goes back at the
    end of the request, instead of blocking the quota until the hold expires."""
    rows = [{"text": t, "label": label} for t, label in
            [("great product", "good"), ("love it", "good"), ("awful", "bad"), ("terrible, broken", "bad")] * 10]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows))
    main(["train", "--data", str(data), "--eval", str(data), "--base-model", "tfidf", "--name", "m", "--json"])
    capsys.readouterr()
    settings = settings.model_copy(update={"admin_key": SecretStr(ADMIN["Authorization"][7:])})
    with TestClient(build_app(settings, gate=BillingGate(settings))) as client:
        plan = {"code": "tiny", "currency": "USD", "charges": [],
                "quota": {"metric": "requests", "limit": 2, "action": "block"}}
        assert client.post("/admin/plans", json=plan, headers=ADMIN).status_code == 201
        customer = client.post("/admin/customers", json={"name": "T", "plan": "tiny"}, headers=ADMIN).json()
        me = {"Authorization": "Bearer " + client.post("/admin/keys", json={"customer_id": customer["id"]},
                                                       headers=ADMIN).json()["key"]}
        for _ in range(4):  # each admitted, then refused: nothing recorded, nothing kept
            bad = client.post("/explain", json={"inputs": "great", "target": "nonsense"}, headers=me)
            assert 400 <= bad.status_code < 500 and bad.status_code != 402, bad.text
        assert [client.post("/predict", json={"inputs": "great"}, headers=me).status_code
                for _ in range(3)] == [200, 200, 402]
