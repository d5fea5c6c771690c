"""The FastAPI application: `create_app(settings, gate, db=None, routers=())`.

Owns the app's life (models loaded at start-up, batchers drained at shutdown), its state (one
`AppState`, read by the typed dependencies of `serve.deps`), the one exception handler that turns
every error (ours, FastAPI's request validation, 404/405, anything unexpected) into the body
`{"error", "error_type"}` with its HTTP status and headers (Retry-After, RateLimit-*), and a small
ASGI middleware that gives every request an `x-request-id`, refuses oversized bodies and counts
requests by route and status.

It knows no part above it: the composition root (`modelshop.platform.build_app`) picks the gate
and hands in the other parts' routers.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import math
import uuid
from collections.abc import Iterable

import sqlalchemy.exc
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

import modelshop
from modelshop.db import Database
from modelshop.errors import ModelshopError, NotFound, PayloadTooLarge, RateLimited, ValidationError, did_you_mean
from modelshop.gate import AdminKeyGate, Gate
from modelshop.serve.deps import AppState
from modelshop.serve.pooled_models import PooledModels
from modelshop.serve.routes import completions, embeddings, explain, ops, predict
from modelshop.serve.schemas import ROUTE_FIELDS
from modelshop.serve.service import ClientGone, Service
from modelshop.settings import Settings, get_settings

log = logging.getLogger("modelshop.serve")

EXAMPLES = {"/predict": '{"inputs": "I loved it"}', "/models/{name}": '{"inputs": "I loved it"}',
            "/v1/embeddings": '{"input": "how do I reset my password?", "model": "minilm"}',
            "/explain": '{"inputs": "I loved it"}'}


class MethodNotAllowed(ModelshopError):
    status_code = 405
    error_type = "method_not_allowed"


def create_app(settings: Settings | None = None, gate: Gate | None = None, *, db: Database | None = None,
               routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The server's app: its own routes, then `routers` (the other parts'); `gate` defaults to the admin key."""
    settings = settings or get_settings()
    gate = gate or AdminKeyGate(settings)
    service = Service(settings)
    models = PooledModels(service)  # what the apps' routes hand the app functions

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        models.attach()
        await service.start()
        # what startup made (torch, transformers, the models) lives as long as the server: out of the
        # collector's way, so a full collection does not stall the event loop for a quarter second
        gc.collect()
        gc.freeze()
        yield
        models.close()
        await service.aclose()
        await gate.close()

    app = FastAPI(title="modelshop", version=modelshop.__version__, lifespan=lifespan,
                  description="Text classification, embeddings and explanations of the models in the "
                              "modelshop registry. Errors are always `{\"error\", \"error_type\"}`.")
    app.state.modelshop = AppState(settings=settings, gate=gate, service=service, models=models, db=db)
    for router in (predict.router, embeddings.router, completions.router, explain.router, ops.router, *routers):
        app.include_router(router)
    for exc_type in (ModelshopError, RequestValidationError, StarletteHTTPException, ClientGone, OverflowError,
                     sqlalchemy.exc.DataError, Exception):
        app.add_exception_handler(exc_type, handle_error)
    app.add_middleware(RequestMiddleware, service=service)
    return app


async def handle_error(request: Request, exc: Exception) -> Response:
    """The one place an error becomes an HTTP answer."""
    route = _route_of(request.scope)
    metrics = request.app.state.modelshop.service.metrics
    if isinstance(exc, ClientGone):
        metrics.failures.labels(route, "client_gone").inc()
        return Response(status_code=499)
    error = to_error(exc, request, route)
    metrics.failures.labels(route, error.error_type).inc()
    headers = {"x-request-id": getattr(request.state, "request_id", ""), **error_headers(error)}
    if isinstance(exc, StarletteHTTPException) and exc.headers:
        headers.update(exc.headers)
    if request.url.path.startswith(OPENAI_PATHS):
        return JSONResponse(openai_error_body(error), status_code=openai_status(error), headers=headers)
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)


# the OpenAI-compatible routes answer errors in OpenAI's shape; our own /v1/account, /v1/partner keep ours
OPENAI_PATHS = ("/v1/chat/", "/v1/completions", "/v1/models", "/v1/embeddings")
OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "insufficient_quota",
                403: "permission_error", 404: "invalid_request_error", 409: "conflict_error",
                413: "invalid_request_error", 429: "rate_limit_error"}


def openai_status(error: ModelshopError) -> int:
    """OpenAI answers a request it cannot take with 400 (its clients raise BadRequestError); so do we on /v1/*."""
    return 400 if error.status_code == 422 else error.status_code


def openai_error_body(error: ModelshopError) -> dict:
    """OpenAI's error shape, so its clients raise the right exception with our message; `code` is our error_type."""
    status = openai_status(error)
    kind = OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": error.message, "type": kind, "param": error.extra.get("param"),
                      "code": error.error_type}}


def error_headers(error: ModelshopError) -> dict[str, str]:
    """Retry-After for an error that says when to retry; RateLimit-Limit/Remaining/Reset for a rate limit
    that carries them (whole seconds, rounded up)."""
    headers = {}
    if isinstance(error, RateLimited) and error.extra.get("limit"):
        headers = {"RateLimit-Limit": str(error.extra["limit"]), "RateLimit-Remaining": str(error.extra["remaining"]),
                   "RateLimit-Reset": str(math.ceil(error.extra["reset"]))}
    if error.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return headers


def to_error(exc: Exception, request: Request, route: str) -> ModelshopError:
    if isinstance(exc, ModelshopError):
        return exc
    if isinstance(exc, RequestValidationError):
        return ValidationError(describe_validation(exc.errors(), route))
    if isinstance(exc, OverflowError | sqlalchemy.exc.DataError):
        # an id or count past what the database stores (2^63 on SQLite and PostgreSQL): bad input, not a crash
        return ValidationError("a number in the request is out of range; identifiers and counts are below 2^63")
    if isinstance(exc, StarletteHTTPException) and isinstance(exc.__cause__, ModelshopError):
        return exc.__cause__  # e.g. the body cap hit while FastAPI read a chunked body
    if isinstance(exc, StarletteHTTPException):
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            paths = sorted(request.app.openapi()["paths"])
            return NotFound(f"no route {where}{did_you_mean(request.url.path, paths)}; routes: {', '.join(paths)}")
        if exc.status_code == 405:
            allowed = exc.headers.get("Allow", "") if exc.headers else ""
            return MethodNotAllowed(f"{where} is not allowed; use {allowed or 'the method in /docs'}")
        if exc.status_code == 413:
            return PayloadTooLarge(f"request body too large: {exc.detail}")
        error = ModelshopError(str(exc.detail))
        error.status_code, error.error_type = exc.status_code, "http"
        return error
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ModelshopError(f"internal error (request id {getattr(request.state, 'request_id', '?')}); "
                          "it has been logged; retry, and report it if it persists")


def describe_validation(errors: list[dict], route: str) -> str:
    """FastAPI's validation errors as one line that says what to fix."""
    example = f"; expected e.g. {EXAMPLES[route]}" if route in EXAMPLES else ""
    parts: list[str] = []
    seen: set[str] = set()
    # Unknown fields first: a misspelt field also shows up as the real one missing.
    for e in sorted(errors, key=lambda e: e.get("type") != "extra_forbidden"):
        raw = [str(x) for x in e.get("loc", ()) if x != "body"]
        loc = [x for x in raw if not _is_union_tag(x)]
        where = "".join(f"[{x}]" if x.isdigit() else f".{x}" for x in loc).lstrip(".")
        kind = e.get("type", "")
        if where in seen:
            continue
        if kind == "json_invalid":
            return (f"request body is not valid JSON ({e.get('ctx', {}).get('error', 'decode error')} at "
                    f"position {loc[0] if loc else '?'}); send a JSON object{example}")
        if kind == "missing" and not loc:
            return f"request body is missing; send a JSON object with Content-Type: application/json{example}"
        seen.add(where)
        if kind == "extra_forbidden":
            fields = ROUTE_FIELDS.get((route, tuple(x for x in loc[:-1] if not x.isdigit())), ())
            parts.append(f'unknown field "{loc[-1]}"{did_you_mean(loc[-1], fields)}'
                         + (f" (fields: {', '.join(fields)})" if fields else ""))
        elif kind in ("model_attributes_type", "dict_type") and not loc and isinstance(e.get("input"), bytes):
            return f"the body was not read as JSON; send it with Content-Type: application/json{example}"
        elif kind in ("model_attributes_type", "dict_type") and not loc:
            parts.append(f"the body must be a JSON object, not {_json_type(e.get('input'))}")
        elif len(loc) < len(raw):  # a value matching none of a union's types
            parts.append(f"{where}: {_json_type(e.get('input'))} is not accepted here; "
                         f"expected {UNION_FIELDS.get(loc[-1], 'another type (see /docs)')}")
        else:
            parts.append(f"{where or 'body'}: {e.get('msg', 'invalid')}")
    more = f" (and {len(parts) - 3} more)" if len(parts) > 3 else ""
    return "invalid request: " + "; ".join(parts[:3]) + more + example


UNION_FIELDS = {"inputs": "a string, or a list of strings (see /docs for each route's shapes)",
                "input": "a string or a list of strings"}


def _is_union_tag(part: str) -> bool:
    """pydantic names the branch of a union it tried (str, list[str], ...) in the error location."""
    return "[" in part or part in {"str", "int", "float", "bool", "dict", "list", "none", "literal"}


def _json_type(value) -> str:
    names = {str: "a string", bool: "true/false", int: "a number", float: "a number", list: "a list",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _route_of(scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestMiddleware:
    """Request id on every answer, a body-size cap, and requests counted by route and status."""

    def __init__(self, app, service: Service) -> None:
        self.app = app
        self.service = service
        # A random prefix per process and a counter: unique ids without a random syscall per request.
        self._prefix = uuid.uuid4().hex[:20]
        self._counter = itertools.count(1)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = f"{self._prefix}{next(self._counter):012x}"
        scope.setdefault("state", {})["request_id"] = request_id
        status = {"code": 500}
        limit = self.service.settings.max_request_bytes

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers.append("x-request-id", request_id)
            await send(message)

        received = 0

        async def receive_capped():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"request body is over {limit} bytes (max_request_bytes); send less "
                                          "per request")
            return message

        try:
            length = int(dict(scope["headers"]).get(b"content-length", b"0") or 0)
        except ValueError:
            length = 0
        try:
            if length > limit:
                error = PayloadTooLarge(f"request body is {length} bytes; the limit is {limit} "
                                        "(max_request_bytes): send fewer or shorter texts per request")
                response = JSONResponse(error.to_body(), status_code=error.status_code)
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, receive_capped, send_with_id)
        finally:
            self.service.metrics.requests.labels(_route_of(scope), str(status["code"])).inc()
