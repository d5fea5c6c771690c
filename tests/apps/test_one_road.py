"""One road to the models: inside the server the bot and the FAQ run on the server's own served models
(the batchers and worker processes of /predict and /v1/embeddings), load no copy of their own, and meter
the tokens the model they run reads; outside it, `DirectModels` loads each model once per process."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelshop.apps import support
from modelshop.errors import NotFound, ValidationError
from modelshop.serve.embeddings import load_embedder
from tests.support import AUTH

QUESTION = "how can I send back something I bought?"
MESSAGE = "I was charged twice for my subscription this month"


def _batches(service, model: str) -> float:
    """Batches the server's batcher of `model` has run (its batch-size histogram's count)."""
    return service.metrics.registry.get_sample_value("modelshop_batch_size_count", {"model": model}) or 0.0


def _direct_loads() -> int:
    """Look-ups of this process's own model caches (the direct road), hits and misses alike."""
    from modelshop.serve import direct_models

    info = [load_embedder.cache_info(), direct_models._predictor.cache_info()]
    return sum(i.hits + i.misses for i in info)


@pytest.mark.slow  # the real minilm, in a worker process
def test_bot_and_faq_go_through_the_servers_batchers_and_worker_processes(world):
    from modelshop.platform import build_app

    support.create_bot("road", "intents", "shop", replace=True, settings=world)
    # one worker process for the PyTorch embedding model, as a CPU server runs it (tfidf stays on threads)
    app = build_app(world.model_copy(update={"serve_workers": 1, "serve_processes": True}))
    service = app.state.modelshop.service
    with TestClient(app) as client:
        intents = service.pool.served["intents"]
        assert client.post("/v1/embeddings", json={"input": "warm up"}, headers=AUTH).status_code == 200
        embedder = service.pool._embedder
        assert embedder.processes is not None and len(embedder.processes.pids()) == 1  # batches run in a worker
        before = {m: _batches(service, m) for m in (intents.ref, embedder.ref)}
        loads = _direct_loads()

        said = client.post("/apps/support/road/message", json={"text": QUESTION}, headers=AUTH)
        assert said.status_code == 200, said.text
        assert said.json()["source"] == "faq"              # classified by the intents, answered by the FAQ
        assert _batches(service, intents.ref) == before[intents.ref] + 1
        assert _batches(service, embedder.ref) == before[embedder.ref] + 1
        asked = client.post("/apps/faq/shop/ask", json={"question": QUESTION}, headers=AUTH)
        assert asked.status_code == 200 and asked.json()["answers"][0]["id"] == "returns"
        assert _batches(service, embedder.ref) == before[embedder.ref] + 2
        assert client.post("/predict?model=intents", json={"inputs": MESSAGE}, headers=AUTH).status_code == 200
        assert _batches(service, intents.ref) == before[intents.ref] + 2   # /predict: the same batcher

        # the same served models (nothing swapped in), and no model loaded on the side
        assert service.pool.served["intents"] is intents and service.pool._embedder is embedder
        assert _direct_loads() == loads

        # tokens metered by the model each call runs, as that model reads them
        bot_tokens = sum(e.tokens for e in intents.runner.prepare([(MESSAGE, None)], True))
        faq_tokens = sum(e.tokens for e in embedder.runner.prepare([(QUESTION, None)], True))
        assert bot_tokens != sum(e.tokens for e in embedder.runner.prepare([(MESSAGE, None)], True))
        message = client.post("/apps/support/road/message", json={"text": MESSAGE}, headers=AUTH)
        assert message.headers["x-compute-tokens"] == str(bot_tokens)     # tfidf words, not minilm word pieces
        assert asked.headers["x-compute-tokens"] == str(faq_tokens)


def test_the_servers_models_refuse_what_they_do_not_serve(world):
    from modelshop.platform import build_app

    app = build_app(world.model_copy(update={"serve_workers": 1}))
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        models = app.state.modelshop.models     # its blocking methods, called from this (non-loop) thread
        out = models.classify("intents", [MESSAGE])
        assert out.ref == "intents:1" and out.best()[0] == "billing" and out.probabilities.sum() == pytest.approx(1)
        assert out.tokens == models.count_tokens([MESSAGE], "intents")
        with pytest.raises(NotFound, match=r'intents:7 is not served: .* \(intents:1\); use "intents"'):
            models.classify("intents:7", [MESSAGE])
        with pytest.raises(ValidationError, match='this server embeds with "minilm", not "e5"'):
            models.embed([MESSAGE], "e5")
        with pytest.raises(ValidationError, match="wrap a single text in a list"):
            models.embed(MESSAGE)


def test_a_blocking_call_on_the_event_loop_is_refused(world):
    import asyncio

    from modelshop.serve.pooled_models import PooledModels
    from modelshop.serve.service import Service

    models = PooledModels(Service(world))

    async def on_the_loop():
        models.attach()
        models.classify("intents", [MESSAGE])

    with pytest.raises(RuntimeError, match="await aclassify"):
        asyncio.run(on_the_loop())
    with pytest.raises(RuntimeError, match="app thread of a started server"):
        PooledModels(Service(world)).embed([MESSAGE])


def test_direct_models_load_once_and_count_what_the_model_reads(world):
    from modelshop.serve.direct_models import DirectModels

    first, second = DirectModels(world), DirectModels(world)
    assert first.classifier("intents")[0] is second.classifier("intents:1")[0]
    assert first.embedder() is second.embedder("minilm")
    out = first.classify("intents", [MESSAGE, QUESTION])
    assert out.ref == "intents:1" and out.probabilities.shape == (2, len(out.labels))
    predictor = first.classifier("intents")[0]
    assert out.tokens == first.count_tokens([MESSAGE, QUESTION], "intents") == sum(predictor.count_tokens(
        [MESSAGE, QUESTION])) > 0                          # tfidf reads every word: nothing truncated
    long = "word " * 600                                   # past minilm's 256: what it reads is 256
    embedded = first.embed([long, QUESTION])
    assert embedded.ref == "minilm" and embedded.vectors.shape == (2, 384)
    assert embedded.tokens == 256 + first.count_tokens([QUESTION], task="embed")
    with pytest.raises(ValidationError, match="needs the classifier's NAME"):
        first.count_tokens([MESSAGE])
    from modelshop.serve.direct_models import _predictor, unload

    unload()                                               # what `modelshop demo` does before it serves
    assert load_embedder.cache_info().currsize == _predictor.cache_info().currsize == 0
