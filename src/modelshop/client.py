"""A small Python client for a modelshop server: `Client` (sync) and `AsyncClient` (asyncio), on httpx.

    from modelshop.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as c:
        c.predict("I loved it")                    # [{"label": ..., "score": ...}, ...]
        c.classify("reviews", ["good", "bad"])     # Hugging Face shape: one list per text
        c.embed(["how do I reset my password?"])   # list of vectors
        c.explain("I loved it")
Error answers raise modelshop's own error classes (`Unauthorized`, `NotFound`, `Overloaded`, ...),
chosen by the body's `error_type`; `.status_code` and `.request_id` say what the server said.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import numpy as np

from modelshop import errors

__all__ = ["Client", "AsyncClient", "ServerError"]


class ServerError(errors.ModelshopError):
    """An error answer whose `error_type` this client does not know (e.g. from a newer server)."""


def _error_classes() -> dict[str, type[errors.ModelshopError]]:
    found, todo = {}, [errors.ModelshopError]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.error_type, cls)
        todo.extend(cls.__subclasses__())
    return found


def raise_for_error(response: httpx.Response) -> None:
    """Raise the error class named by the body (one line: the server's message)."""
    if response.status_code < 400:
        return
    try:
        body = response.json()
        message, kind = str(body["error"]), str(body.get("error_type", ""))
    except (ValueError, KeyError, TypeError):
        message, kind = f"HTTP {response.status_code}: {response.text[:200]}", ""
    cls = _error_classes().get(kind, ServerError)
    if issubclass(cls, errors.RateLimited):
        error = cls(message, retry_after=float(response.headers.get("retry-after", 1)))
    else:
        error = cls(message)
    error.status_code = response.status_code
    error.request_id = response.headers.get("x-request-id")
    raise error


def _decode_embeddings(body: dict) -> list[list[float]]:
    out = []
    for item in sorted(body["data"], key=lambda d: d["index"]):
        vec = item["embedding"]
        if isinstance(vec, str):
            vec = np.frombuffer(base64.b64decode(vec), dtype="<f4").tolist()
        out.append(vec)
    return out


class _Requests:
    """The request of each method, shared by the sync and async clients."""

    @staticmethod
    def predict(inputs, model, raw_scores, truncate, truncation_direction) -> tuple[str, dict, dict]:
        body: dict[str, Any] = {"inputs": inputs, "raw_scores": raw_scores,
                                "truncation_direction": truncation_direction}
        if truncate is not None:
            body["truncate"] = truncate
        return "/predict", body, {"model": model} if model else {}

    @staticmethod
    def classify(model, inputs, top_k, function_to_apply) -> tuple[str, dict, dict]:
        params = {k: v for k, v in (("top_k", top_k), ("function_to_apply", function_to_apply)) if v is not None}
        return f"/models/{model}", {"inputs": inputs, **({"parameters": params} if params else {})}, {}

    @staticmethod
    def embed(texts, model, encoding_format) -> tuple[str, dict, dict]:
        body = {"input": texts, "encoding_format": encoding_format, **({"model": model} if model else {})}
        return "/v1/embeddings", body, {}

    @staticmethod
    def explain(text, model, target, method) -> tuple[str, dict, dict]:
        body = {"inputs": text, **{k: v for k, v in (("target", target), ("method", method)) if v is not None}}
        return "/explain", body, {"model": model} if model else {}


def _health(response: httpx.Response) -> dict:
    if response.status_code == 503 and "status" in response.text:
        return response.json()
    raise_for_error(response)
    return response.json()


def _headers(api_key: str | None, idempotency_key: str | None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    if idempotency_key:
        h["Idempotency-Key"] = idempotency_key
    return h


class Client:
    """Synchronous client; use as a context manager or call `close()`."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.api_key = api_key
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    def _post(self, spec, idempotency_key=None):
        path, body, params = spec
        r = self._http.post(path, json=body, params=params, headers=_headers(self.api_key, idempotency_key))
        raise_for_error(r)
        return r.json()

    def _get(self, path, params=None):
        r = self._http.get(path, params=params, headers=_headers(self.api_key, None))
        raise_for_error(r)
        return r

    def predict(self, inputs, *, model: str | None = None, raw_scores: bool = False, truncate: bool | None = None,
                truncation_direction: str = "right", idempotency_key: str | None = None):
        """TEI /predict: a text → its labels best first; a batch [[text], [text, pair]] → one list each."""
        return self._post(_Requests.predict(inputs, model, raw_scores, truncate, truncation_direction),
                          idempotency_key)

    def classify(self, model: str, inputs, *, top_k: int | None = None, function_to_apply: str | None = None,
                 idempotency_key: str | None = None) -> list[list[dict]]:
        """Hugging Face shape: one list of {label, score} per text."""
        return self._post(_Requests.classify(model, inputs, top_k, function_to_apply), idempotency_key)

    def embed(self, texts, *, model: str | None = None, encoding_format: str = "base64",
              idempotency_key: str | None = None) -> list[list[float]]:
        """One unit-length vector per text (a single text: a list of one vector)."""
        return _decode_embeddings(self._post(_Requests.embed(texts, model, encoding_format), idempotency_key))

    def explain(self, text: str, *, model: str | None = None, target: str | None = None,
                method: str | None = None) -> dict:
        return self._post(_Requests.explain(text, model, target, method))

    def info(self, model: str | None = None) -> dict:
        return self._get("/info", {"model": model} if model else None).json()

    def health(self) -> dict:
        """The server's status (503 while no model is loaded is an answer, not an error)."""
        return _health(self._http.get("/health"))

    def metrics(self) -> str:
        return self._get("/metrics").text

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient:
    """The same methods as `Client`, awaitable; use `async with` or `await aclose()`."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 60.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.api_key = api_key
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def _post(self, spec, idempotency_key=None):
        path, body, params = spec
        r = await self._http.post(path, json=body, params=params, headers=_headers(self.api_key, idempotency_key))
        raise_for_error(r)
        return r.json()

    async def _get(self, path, params=None):
        r = await self._http.get(path, params=params, headers=_headers(self.api_key, None))
        raise_for_error(r)
        return r

    async def predict(self, inputs, *, model: str | None = None, raw_scores: bool = False,
                      truncate: bool | None = None, truncation_direction: str = "right",
                      idempotency_key: str | None = None):
        return await self._post(_Requests.predict(inputs, model, raw_scores, truncate, truncation_direction),
                                idempotency_key)

    async def classify(self, model: str, inputs, *, top_k: int | None = None, function_to_apply: str | None = None,
                       idempotency_key: str | None = None) -> list[list[dict]]:
        return await self._post(_Requests.classify(model, inputs, top_k, function_to_apply), idempotency_key)

    async def embed(self, texts, *, model: str | None = None, encoding_format: str = "base64",
                    idempotency_key: str | None = None) -> list[list[float]]:
        return _decode_embeddings(await self._post(_Requests.embed(texts, model, encoding_format), idempotency_key))

    async def explain(self, text: str, *, model: str | None = None, target: str | None = None,
                      method: str | None = None) -> dict:
        return await self._post(_Requests.explain(text, model, target, method))

    async def info(self, model: str | None = None) -> dict:
        return (await self._get("/info", {"model": model} if model else None)).json()

    async def health(self) -> dict:
        return _health(await self._http.get("/health"))

    async def metrics(self) -> str:
        return (await self._get("/metrics")).text

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
