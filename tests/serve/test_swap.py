"""Promotion while serving: the new version is swapped in, no request is dropped; new and retired names."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from modelshop.platform import build_app
from modelshop.registry import Registry
from modelshop.train import TrainConfig, run_training
from tests.support import AUTH


def test_promoting_swaps_the_version_without_dropping_requests(fresh_settings, toy_files):
    registry = Registry.from_settings(fresh_settings)
    with TestClient(build_app(fresh_settings)) as c:
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).headers["x-model"] == "fast:1"
        run_training(toy_files[0], toy_files[1], name="fast", settings=fresh_settings,
                     cfg=TrainConfig(base_model="tfidf"))
        assert registry.get("fast:2").stage == "staging"
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).headers["x-model"] == "fast:1"

        seen: list[tuple[int, str | None]] = []
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                r = c.post("/predict", json={"inputs": [["great"], ["awful"]]}, headers=AUTH)
                seen.append((r.status_code, r.headers.get("x-model")))

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.3)
        registry.promote("fast:2")
        deadline = time.monotonic() + 30
        while not any(m == "fast:2" for _, m in seen[-4:]):
            assert time.monotonic() < deadline, "the promoted version was never served"
            time.sleep(0.05)
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert {status for status, _ in seen} == {200}
        models = [m for _, m in seen]
        assert models[0] == "fast:1" and models[-1] == "fast:2"
        metrics = c.get("/metrics", headers=AUTH).text
        assert 'modelshop_model_swaps_total{model="fast"} 1.0' in metrics


def test_a_name_registered_while_serving_is_found_and_a_retired_one_is_gone(fresh_settings, toy_files):
    registry = Registry.from_settings(fresh_settings)
    with TestClient(build_app(fresh_settings)) as c:
        assert c.post("/models/other", json={"inputs": "x"}, headers=AUTH).status_code == 404
        run_training(toy_files[0], toy_files[1], name="other", settings=fresh_settings,
                     cfg=TrainConfig(base_model="tfidf"))
        r = c.post("/models/other", json={"inputs": "great"}, headers=AUTH)
        assert r.status_code == 200 and r.headers["x-model"] == "other:1"
        registry.promote("other:1", "archived")
        r = c.post("/models/other", json={"inputs": "great"}, headers=AUTH)
        assert r.status_code == 404 and "served: fast" in r.json()["error"]


def test_a_version_that_cannot_load_does_not_take_the_others_down(fresh_settings, toy_files):
    registry = Registry.from_settings(fresh_settings)
    run_training(toy_files[0], toy_files[1], name="broken", settings=fresh_settings,
                 cfg=TrainConfig(base_model="tfidf"))
    (registry.path(registry.get("broken")) / "tfidf.joblib").write_bytes(b"not a model")
    with TestClient(build_app(fresh_settings)) as c:
        health = c.get("/health").json()
        assert health["status"] == "degraded" and "broken" in health["failed"] and health["models"] == {
            "fast": "fast:1"}
        r = c.post("/models/broken", json={"inputs": "x"}, headers=AUTH)
        assert r.status_code == 500 and r.json()["error_type"] == "model"
        assert r.json()["error"].startswith('model "broken" could not be loaded: ')
        assert c.post("/models/fast", json={"inputs": "great"}, headers=AUTH).status_code == 200
