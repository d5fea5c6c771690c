"""/v1/embeddings in OpenAI's shape (a tiny BERT here; the real minilm with the `openai` client, slow)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.platform import build_app
from modelshop.serve.embeddings import embed
from tests.support import ADMIN_KEY, AUTH, live_server, make_settings


@pytest.fixture(scope="module")
def tiny_embed_settings(served_settings, tiny_bert):
    return make_settings(served_settings.home, embedding_model=str(tiny_bert))


@pytest.fixture(scope="module")
def eclient(tiny_embed_settings):
    with TestClient(build_app(tiny_embed_settings)) as c:
        yield c


def test_openai_shape_unit_vectors_and_usage(eclient, tiny_bert, tiny_embed_settings):
    texts = ["how do I reset my password?", "shipping costs to Europe"]
    r = eclient.post("/v1/embeddings", json={"input": texts, "model": tiny_bert.name}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == tiny_bert.name
    assert [d["index"] for d in body["data"]] == [0, 1] and {d["object"] for d in body["data"]} == {"embedding"}
    vectors = np.array([d["embedding"] for d in body["data"]])
    assert vectors.shape == (2, 32)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] == int(r.headers["x-compute-tokens"])
    # the library function other parts import gives the same vectors
    assert embed(texts, settings=tiny_embed_settings) == pytest.approx(vectors, abs=1e-5)


def test_base64_and_dimensions(eclient, tiny_bert):
    name = tiny_bert.name
    floats = eclient.post("/v1/embeddings", json={"input": "hello there", "model": name}, headers=AUTH).json()
    b64 = eclient.post("/v1/embeddings", json={"input": "hello there", "model": name, "encoding_format": "base64"},
                       headers=AUTH).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert decoded == pytest.approx(np.array(floats["data"][0]["embedding"]), abs=1e-6)
    short = eclient.post("/v1/embeddings", json={"input": "hello there", "model": name, "dimensions": 8},
                         headers=AUTH).json()["data"][0]["embedding"]
    assert len(short) == 8 and np.linalg.norm(short) == pytest.approx(1.0, abs=1e-5)
    r = eclient.post("/v1/embeddings", json={"input": "x", "model": name, "dimensions": 33}, headers=AUTH)
    assert r.status_code == 400 and "at most 32" in r.json()["error"]["message"]


def test_embed_function_refuses_a_bare_string(tiny_embed_settings):
    from modelshop.errors import ValidationError

    with pytest.raises(ValidationError, match="wrap a single text in a list"):
        embed("just one", settings=tiny_embed_settings)


@pytest.mark.slow
def test_openai_client_with_the_real_minilm(served_settings, monkeypatch):
    from openai import OpenAI

    with live_server(build_app(served_settings)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0)
        question = ["How do I reset my password?"]
        docs = ["Steps to change a forgotten password", "Shipping costs for orders to Europe",
                "Our office opening hours"]
        q = client.embeddings.create(model="minilm", input=question).data[0].embedding
        d = client.embeddings.create(model="all-MiniLM-L6-v2", input=docs, encoding_format="float")
        assert len(q) == 384 and [e.index for e in d.data] == [0, 1, 2]
        sims = np.array([e.embedding for e in d.data]) @ np.array(q)
        assert int(np.argmax(sims)) == 0 and sims[0] > 0.5
        assert d.usage.prompt_tokens > 0
        # the same numbers as the library function (sentence-transformers' recipe: mean pool, L2)
        assert embed(docs, settings=served_settings) == pytest.approx(
            np.array([e.embedding for e in d.data]), abs=1e-4)


@pytest.mark.slow
def test_minilm_embeddings_match_sentence_transformers(served_settings):
    # a dev dependency (pyproject.toml): a missing reference fails here instead of skipping silently
    import sentence_transformers as st

    from modelshop.train.base_models import minilm_path

    texts = ["How do I reset my password?", "Shipping costs for orders to Europe"]
    reference = st.SentenceTransformer(minilm_path(), device="cpu").encode(texts, normalize_embeddings=True)
    assert embed(texts, settings=served_settings) == pytest.approx(reference, abs=1e-4)
