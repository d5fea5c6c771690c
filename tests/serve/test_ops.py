"""/health, /info and /metrics: who may read them (operators only, except /health), and what /health says
when nothing is registered or Redis is unreachable."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from modelshop.platform import build_app
from tests.support import AUTH, customer_key, make_settings

METRICS_KEY = "test-metrics-key-0123456789"
DOWN = "redis://127.0.0.1:1/0"   # a closed port: a real connection failure


@pytest.mark.parametrize("path", ["/metrics", "/info"])
def test_metrics_and_info_are_for_operators(fresh_settings, path):
    settings = fresh_settings.model_copy(update={"serve_gate": "billing", "metrics_key": SecretStr(METRICS_KEY)})
    customer = customer_key(settings)
    with TestClient(build_app(settings)) as c:
        assert c.post("/predict", json={"inputs": "great"}, headers=customer).status_code == 200  # a real key
        none = c.get(path)
        assert none.status_code == 401 and none.json()["error_type"] == "unauthorized"
        assert c.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401
        refused = c.get(path, headers=customer)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == (f"{path} is for operators: send the admin key or MODELSHOP_METRICS_KEY, "
                                           "not a customer's key")
        assert c.get(path, headers=AUTH).status_code == 200
        assert c.get(path, headers={"Authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        assert c.get("/health").status_code == 200   # no key: load balancers call it


def test_the_metrics_key_works_under_the_admin_gate_too(fresh_settings):
    settings = fresh_settings.model_copy(update={"serve_gate": "admin", "metrics_key": SecretStr(METRICS_KEY)})
    with TestClient(build_app(settings)) as c:
        assert c.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}).status_code == 200
        assert c.get("/metrics").status_code == 401
        # the metrics key reads; it does not call models
        assert c.post("/predict", json={"inputs": "x"}, headers={"Authorization": f"Bearer {METRICS_KEY}"}
                      ).status_code == 401


def test_an_unreachable_redis_is_degraded_health_and_a_503_for_quota_calls(fresh_settings):
    settings = fresh_settings.model_copy(update={"serve_gate": "billing", "redis_url": DOWN})
    customer = customer_key(settings)
    with TestClient(build_app(settings)) as c:
        health = c.get("/health")
        assert health.status_code == 200   # a load balancer keeps the replica
        assert health.json() == {"status": "degraded", "models": {"fast": "fast:1"}, "failed": {},
                                 "redis": "unreachable"}
        r = c.post("/predict", json={"inputs": "great"}, headers=customer)   # free plan: a blocking quota
        assert r.status_code == 503 and r.headers["Retry-After"] == "5"
        assert r.json() == {"error": "Redis at 127.0.0.1:1 is unreachable, so the plan's quota or prepaid balance "
                                     "cannot be checked and the call is refused; retry in a few seconds",
                            "error_type": "service_unavailable"}
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).status_code == 200  # the admin: no quota


def test_health_says_redis_is_ok_when_it_is(fresh_settings):
    import redis

    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=1).ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis not reachable at 127.0.0.1:6379 ({type(e).__name__})")
    settings = fresh_settings.model_copy(update={"serve_gate": "billing", "redis_url": "redis://127.0.0.1:6379/0"})
    with TestClient(build_app(settings)) as c:
        assert c.get("/health").json() == {"status": "ok", "models": {"fast": "fast:1"}, "failed": {}, "redis": "ok"}


def test_a_server_with_nothing_registered_is_healthy_and_says_how_to_train(tmp_path):
    with TestClient(build_app(make_settings(tmp_path / "empty"))) as c:
        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["models"] == {}
        assert "modelshop train --data FILE --name NAME" in health.json()["note"]
        for r in (c.post("/predict", json={"inputs": "great"}, headers=AUTH),
                  c.post("/models/sentiment", json={"inputs": "great"}, headers=AUTH),
                  c.get("/info", headers=AUTH)):
            assert r.status_code == 404, r.text
            assert "no model is in production yet; train one with `modelshop train" in r.json()["error"]
