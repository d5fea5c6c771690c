"""`modelshop.client.AsyncClient` over the in-process ASGI transport; idempotency keys reach the gate."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from modelshop.client import AsyncClient
from modelshop.errors import NotFound, PayloadTooLarge, ValidationError
from modelshop.gate import AdminKeyGate, UnmeteredCall
from modelshop.serve import create_app
from tests.support import ADMIN_KEY, make_settings


class RecordingGate(AdminKeyGate):
    """The admin gate, plus a memory of what was admitted and recorded, replaying by idempotency key."""

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.admitted, self.recorded, self.stored = [], [], {}

    def metered(self, principal, route, *, idempotency_key=None, fingerprint="", request_id=""):
        return RecordingMeter(self, route, idempotency_key)


class RecordingMeter(UnmeteredCall):
    def __init__(self, gate: RecordingGate, route: str, key: str | None) -> None:
        self.gate, self.route, self.key = gate, route, key
        self.replay = gate.stored.get((key, route)) if key else None

    async def admit(self, model, units):
        self.gate.admitted.append((model, units))

    async def record(self, call, reply):
        call.idempotency_key = self.key
        self.gate.recorded.append(call)
        if self.key:
            self.gate.stored[(self.key, call.route)] = reply
        return reply


def test_async_client_all_routes_and_metering(served_settings, tiny_bert):
    settings = make_settings(served_settings.home, embedding_model=str(tiny_bert))
    gate = RecordingGate(settings)
    app = create_app(settings, gate=gate)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with AsyncClient("http://modelshop.test", ADMIN_KEY, transport=transport) as c:
            assert (await c.health())["status"] == "unavailable"  # no lifespan here: models load on first use
            top = await c.predict("terrible, broken, awful", model="fast")
            assert top[0]["label"] == "bad"
            assert len(await c.classify("toy", ["a", "b"])) == 2
            vectors = await c.embed(["one text", "another"])
            assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1], abs=1e-5)
            assert (await c.explain("great", model="toy"))["method"] == "integrated_gradients"
            assert (await c.info("fast"))["family"] == "tfidf"
            assert (await c.health())["models"] == {"fast": "fast:1", "toy": "toy:1"}
            first = await c.predict("great", model="fast", idempotency_key="retry-1")
            again = await c.predict("great", model="fast", idempotency_key="retry-1")
            assert again == first
            with pytest.raises(NotFound):
                await c.predict("x", model="nope")
            with pytest.raises(PayloadTooLarge, match="max_inputs_per_request"):
                await c.classify("fast", ["x"] * 300)
            with pytest.raises(ValidationError, match="Idempotency-Key"):
                await c.predict("x", model="fast", idempotency_key="has spaces")
        await app.state.modelshop.service.aclose()

    asyncio.run(main())
    routes = [c.route for c in gate.recorded]
    assert routes == ["/predict", "/models/{name}", "/v1/embeddings", "/explain", "/predict"]  # the replay: once
    assert gate.recorded[-1].idempotency_key == "retry-1" and gate.recorded[-1].model == "fast:1"
    assert gate.recorded[0].units.tokens > 0 and gate.recorded[0].units.characters == len("terrible, broken, awful")
    # the NAME:VERSION served
    assert [m for m, _ in gate.admitted] == ["fast:1", "toy:1", tiny_bert.name, "toy:1", "fast:1"]
