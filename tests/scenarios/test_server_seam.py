"""The seam with the server: `build_app(settings, gate=BillingGate)` with the billing routers mounted.

A tfidf model is trained and served; a customer calls /predict over the in-process ASGI client.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelshop.billing import BillingGate
from modelshop.platform import build_app
from tests.scenarios.servers import train_tfidf
from tests.support import AUTH


def test_metered_predict_through_the_server(admin_settings, tmp_path, capsys):
    train_tfidf(tmp_path)
    capsys.readouterr()

    gate = BillingGate(admin_settings)
    app = build_app(admin_settings, gate=gate)  # mounts the billing routers itself
    with TestClient(app) as client:
        plan = {"code": "payg", "currency": "USD", "charges": [{"metric": "requests", "model": "unit",
                                                                "unit_price": "0.01"}]}
        assert client.post("/admin/plans", json=plan, headers=AUTH).status_code == 201
        customer = client.post("/admin/customers", json={"name": "S", "plan": "payg"}, headers=AUTH).json()
        key = client.post("/admin/keys", json={"customer_id": customer["id"], "rpm": 3, "models": ["m"]},
                          headers=AUTH).json()
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


def test_a_call_that_fails_after_admission_gives_its_quota_hold_back(admin_settings, tmp_path, capsys):
    """/explain admits the call, then refuses an unknown target: its hold on the quota goes back at the
    end of the request, instead of blocking the quota until the hold expires."""
    train_tfidf(tmp_path)
    capsys.readouterr()
    with TestClient(build_app(admin_settings, gate=BillingGate(admin_settings))) as client:
        plan = {"code": "tiny", "currency": "USD", "charges": [],
                "quota": {"metric": "requests", "limit": 2, "action": "block"}}
        assert client.post("/admin/plans", json=plan, headers=AUTH).status_code == 201
        customer = client.post("/admin/customers", json={"name": "T", "plan": "tiny"}, headers=AUTH).json()
        me = {"Authorization": "Bearer " + client.post("/admin/keys", json={"customer_id": customer["id"]},
                                                       headers=AUTH).json()["key"]}
        for _ in range(4):  # each admitted, then refused: nothing recorded, nothing kept
            bad = client.post("/explain", json={"inputs": "great", "target": "nonsense"}, headers=me)
            assert 400 <= bad.status_code < 500 and bad.status_code != 402, bad.text
        assert [client.post("/predict", json={"inputs": "great"}, headers=me).status_code
                for _ in range(3)] == [200, 200, 402]
