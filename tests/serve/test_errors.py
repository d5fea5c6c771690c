"""Bad requests get one clear line in the one error shape, with the right status."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from modelshop.platform import build_app
from tests.support import AUTH, make_settings


def error_of(r, status: int, error_type: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type
    assert "\n" not in body["error"]
    assert r.headers.get("x-request-id")
    return body["error"]


def test_missing_and_wrong_keys_are_401(client):
    msg = error_of(client.post("/predict?model=toy", json={"inputs": "x"}), 401, "unauthorized")
    assert "Authorization: Bearer" in msg
    error_of(client.post("/predict?model=toy", json={"inputs": "x"}, headers={"Authorization": "Bearer nope"}),
             401, "unauthorized")
    assert client.get("/health").status_code == 200  # no key needed


def test_malformed_json_and_missing_body(client):
    msg = error_of(client.post("/predict?model=toy", content=b'{"inputs": ', headers={
        **AUTH, "Content-Type": "application/json"}), 422, "validation")
    assert msg.startswith("request body is not valid JSON") and '{"inputs": "I loved it"}' in msg
    msg = error_of(client.post("/predict?model=toy", headers=AUTH), 422, "validation")
    assert "missing" in msg
    # JSON sent without its content type (curl -d's default is a form)
    msg = error_of(client.post("/predict?model=toy", content=b'{"inputs": "x"}', headers={
        **AUTH, "Content-Type": "application/x-www-form-urlencoded"}), 422, "validation")
    assert msg.startswith("the body was not read as JSON; send it with Content-Type: application/json")


@pytest.mark.parametrize(("body", "needle"), [
    ({"inputs": 3}, "inputs: a number is not accepted here"),
    ({"inputs": None}, "inputs: null is not accepted here"),
    ({"input": "x"}, 'unknown field "input" (did you mean "inputs"?)'),
    ({"inputs": "x", "raw_scores": "maybe"}, "raw_scores: Input should be a valid boolean"),
    ({"inputs": "x", "truncation_direction": "up"}, "truncation_direction"),
    ([1, 2], "the body must be a JSON object, not a list"),
    ({"inputs": ""}, "input 0 is empty"),
    ({"inputs": "   "}, "input 0 is empty"),
    ({"inputs": []}, "inputs is an empty list"),
    ({"inputs": ["a", "b", "c"]}, 'for a batch send [["text"], ["text"], ...]'),
    ({"inputs": [["a", "b", "c"]]}, "inputs[0] has 3 strings"),
    ({"inputs": [["a"], "b"]}, "mixes strings and lists"),
])
def test_wrong_types_and_empty_texts_say_what_to_fix(client, body, needle):
    msg = error_of(client.post("/predict?model=toy", json=body, headers=AUTH), 422, "validation")
    assert needle in msg


def test_hugging_face_route_validation(client):
    msg = error_of(client.post("/models/toy", json={"inputs": "x", "parameters": {"topk": 2}}, headers=AUTH),
                   422, "validation")
    assert 'unknown field "topk" (did you mean "top_k"?)' in msg
    error_of(client.post("/models/toy", json={"inputs": "x", "parameters": {"top_k": 0}}, headers=AUTH),
             422, "validation")
    error_of(client.post("/models/toy", json={"inputs": "x", "parameters": {"function_to_apply": "tanh"}},
                         headers=AUTH), 422, "validation")


def test_ten_thousand_inputs_is_413_with_the_limit(client):
    msg = error_of(client.post("/models/toy", json={"inputs": ["hello"] * 10_000}, headers=AUTH),
                   413, "payload_too_large")
    assert msg.startswith("10000 inputs in one request; the limit is 256 (max_inputs_per_request)")
    assert client.post("/models/toy", json={"inputs": ["hello"] * 256}, headers=AUTH).status_code == 200


def test_too_many_characters_and_too_big_bodies(served_settings):
    app = build_app(make_settings(served_settings.home, max_input_chars=50, max_request_bytes=2048))
    with TestClient(app) as c:
        msg = error_of(c.post("/models/fast", json={"inputs": "x" * 51}, headers=AUTH), 413, "payload_too_large")
        assert "51 characters; the limit is 50 (max_input_chars)" in msg
        msg = error_of(c.post("/models/fast", json={"inputs": ["x"] * 1000}, headers=AUTH), 413, "payload_too_large")
        assert "the limit is 2048 (max_request_bytes)" in msg

        def chunks():  # no Content-Length: the cap applies while the body streams in
            yield b'{"inputs": ['
            for _ in range(1000):
                yield b'"x",'
            yield b'"x"]}'

        msg = error_of(c.post("/models/fast", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}),
                       413, "payload_too_large")
        assert "over 2048 bytes (max_request_bytes)" in msg


def test_unknown_routes_and_methods(client):
    msg = error_of(client.get("/predicts"), 404, "not_found")
    assert "/predict" in msg
    msg = error_of(client.get("/predict", headers=AUTH), 405, "method_not_allowed")
    assert "use POST" in msg


def test_explain_validation(client):
    msg = error_of(client.post("/explain?model=toy", json={"inputs": "great", "target": "goood"}, headers=AUTH),
                   422, "validation")
    assert 'did you mean "good"' in msg
    msg = error_of(client.post("/explain?model=fast", json={"inputs": "great", "method": "occlusion"},
                               headers=AUTH), 422, "validation")
    assert "use coefficients" in msg


def openai_error_of(r, status: int, code: str) -> str:
    """On /v1/* errors come in OpenAI's shape (its clients raise the matching exception with our message)."""
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert "\n" not in error["message"] and r.headers.get("x-request-id")
    return error["message"]


def test_embeddings_validation(client):
    msg = openai_error_of(client.post("/v1/embeddings", json={"input": "x", "model": "gpt-embed"}, headers=AUTH),
                          404, "not_found")
    assert 'this server embeds with "minilm"' in msg
    openai_error_of(client.post("/v1/embeddings", json={"input": [1, 2, 3], "model": "minilm"}, headers=AUTH),
                    400, "validation")
    assert openai_error_of(client.post("/v1/embeddings", json={"input": "x"}), 401, "unauthorized")


def test_ids_past_the_database_range_are_422_not_500(client):
    """Found by fuzzing: an id ≥ 2^63 in a path overflowed SQLite's INTEGER inside a query."""
    r = client.get("/admin/customers/9223372036854775808", headers=AUTH)
    assert "out of range" in error_of(r, 422, "validation")
