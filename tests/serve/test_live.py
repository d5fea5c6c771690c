"""A real uvicorn server on loopback: third-party clients, our client, departing clients, backpressure."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from modelshop.client import Client
from modelshop.errors import NotFound, Overloaded, Unauthorized, ValidationError
from modelshop.platform import build_app
from tests.support import ADMIN_KEY, AUTH, live_server, make_settings


@pytest.fixture(scope="module")
def live(served_settings):
    with live_server(build_app(served_settings)) as url:
        yield url


def metric(url: str, series: str) -> float:
    """The value of one Prometheus series, e.g. 'modelshop_queue_size{model="toy:1"}' (0 when absent)."""
    for line in httpx.get(f"{url}/metrics", headers=AUTH).text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == series:
            return float(value)
    return 0.0


def test_huggingface_hub_inference_client(live, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # HF_HUB_OFFLINE blocks every request huggingface_hub makes, even to loopback; this one goes
    # only to our own server, so lift it for this test.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    hf = InferenceClient(base_url=f"{live}/models/toy", api_key=ADMIN_KEY)
    out = hf.text_classification("great product, works well", top_k=2)
    assert {o.label for o in out} == {"good", "bad"}
    assert sum(o.score for o in out) == pytest.approx(1.0, abs=1e-6)
    assert out[0].score >= out[1].score
    assert len(hf.text_classification("great product", top_k=1)) == 1


def test_our_client_against_the_server(live):
    with Client(live, api_key=ADMIN_KEY) as c:
        assert c.health()["status"] == "ok"
        top = c.predict("terrible, broken, awful", model="fast")
        assert top[0]["label"] == "bad"
        assert len(c.predict([["one"], ["two"]], model="toy")) == 2
        assert [len(x) for x in c.classify("toy", ["a", "b"], top_k=1)] == [1, 1]
        assert c.info("toy")["labels"] == ["bad", "good"]
        assert c.explain("awful service", model="fast")["method"] == "coefficients"
        assert "modelshop_requests_total" in c.metrics()
        with pytest.raises(NotFound, match='did you mean "toy"'):
            c.classify("tyo", "x")
        with pytest.raises(ValidationError, match="input 0 is empty"):
            c.predict("", model="toy")
    with Client(live, api_key="wrong") as c, pytest.raises(Unauthorized) as e:
        c.predict("x", model="toy")
    assert e.value.status_code == 401 and e.value.request_id


def _busy(url: str, n: int = 256) -> threading.Thread:
    """A request that keeps the model busy for about a second (one input per batch)."""
    t = threading.Thread(target=lambda: httpx.post(f"{url}/models/toy", json={"inputs": ["some words here"] * n},
                                                   headers=AUTH, timeout=120))
    t.start()
    deadline = time.monotonic() + 10
    while metric(url, "modelshop_requests_in_flight") < 1:
        assert time.monotonic() < deadline, "the busy request never started"
        time.sleep(0.005)
    return t


def test_a_client_that_leaves_mid_request_leaks_nothing(served_settings):
    app = build_app(make_settings(served_settings.home, max_batch_requests=1))
    with live_server(app) as url:
        busy = _busy(url)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/models/toy", json={"inputs": ["leaving early"] * 20}, headers=AUTH, timeout=0.2)
        busy.join()
        deadline = time.monotonic() + 10
        while metric(url, 'modelshop_dropped_inputs_total{model="toy:1"}') < 20:
            assert time.monotonic() < deadline, "the departed client's inputs were not dropped"
            time.sleep(0.02)
        assert metric(url, 'modelshop_queue_size{model="toy:1"}') == 0
        assert metric(url, "modelshop_requests_in_flight") == 0
        r = httpx.post(f"{url}/models/toy", json={"inputs": "still works"}, headers=AUTH)
        assert r.status_code == 200


def test_backpressure_is_429_with_retry_after(served_settings):
    app = build_app(make_settings(served_settings.home, max_batch_requests=1, max_concurrent_requests=1))
    with live_server(app) as url:
        busy = _busy(url)
        r = httpx.post(f"{url}/models/toy", json={"inputs": "one more"}, headers=AUTH)
        busy.join()
        assert r.status_code == 429
        assert r.json()["error_type"] == "overloaded" and "max_concurrent_requests" in r.json()["error"]
        assert int(r.headers["retry-after"]) >= 1
        with Client(url, ADMIN_KEY) as c:
            assert c.classify("toy", "now there is room")[0]
            busy = _busy(url)
            with pytest.raises(Overloaded) as e:
                c.classify("toy", "again")
            busy.join()
            assert e.value.retry_after >= 1
