"""The Gate as routes use it: who calls (a dependency), idempotency claims, the metered reply.

Every metered route follows the same steps:
    caller = Depends(get_caller)                        Authorization: Bearer <key> → gate.authenticate
    if (r := await replayed(service, caller, route)):   claims the Idempotency-Key before any work: the
        return r                                        stored reply of the same request, 422 another
                                                        request, 409 while the first is under way
    outcome = await service.infer(...)                  gate.admit happens in there, once units are known
    return await metered_reply(...)                     gate.record (durable), then the reply with usage
                                                        headers (or the first call's stored reply)
Keys are never logged: only the principal's display label is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from fastapi import Depends, Header, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from modelshop.serve.gate import Call, Principal, StoredReply
from modelshop.serve.service import Outcome, Service

bearer = HTTPBearer(auto_error=False, description="your API key, sent as `Authorization: Bearer <key>`")


@dataclass(frozen=True)
class Caller:
    principal: Principal
    request_id: str
    idempotency_key: str | None
    fingerprint: str = ""     # of the request, when it carries an Idempotency-Key


async def fingerprint(request: Request) -> str:
    """SHA-256 of what an Idempotency-Key names: method, path, query and body (JSON in canonical form,
    so the same object sent with other spacing or key order is the same request)."""
    body = await request.body()
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    query = "&".join(sorted(f"{k}={v}" for k, v in request.query_params.multi_items()))
    h = hashlib.sha256(f"{request.method}\n{request.url.path}\n{query}\n".encode())
    h.update(body)
    return h.hexdigest()


def service_of(request: Request) -> Service:
    return request.app.state.service


async def get_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
        description="a retried request with the same key is answered from the first reply and metered once"),
) -> Caller:
    principal = await service_of(request).gate.authenticate(credentials.credentials if credentials else None)
    return Caller(principal, request.state.request_id, idempotency_key,
                  await fingerprint(request) if idempotency_key else "")


async def get_principal(request: Request,
                        credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """Authentication alone, for routes that read but are not metered (/info, /metrics)."""
    return await service_of(request).gate.authenticate(credentials.credentials if credentials else None)


async def replayed(service: Service, caller: Caller, route: str) -> Response | None:
    """Claim the call's Idempotency-Key before any work; the stored reply when the same request was
    answered before (409 while it is still under way, 422 when the key named another request)."""
    stored = await service.gate.claim(caller.principal, caller.idempotency_key, route, caller.fingerprint,
                                      caller.request_id)
    return None if stored is None else replay_response(stored)


def replay_response(stored: StoredReply) -> Response:
    return Response(stored.body, stored.status, headers={**stored.headers, "x-idempotent-replay": "true"},
                    media_type="application/json")


def usage_headers(request_id: str, model_ref: str, outcome: Outcome) -> dict[str, str]:
    return {"x-request-id": request_id, "x-model": model_ref,
            "x-compute-tokens": str(outcome.units.tokens), "x-compute-characters": str(outcome.units.characters),
            "x-queue-time": f"{outcome.queue_s * 1000:.2f}", "x-inference-time": f"{outcome.inference_s * 1000:.2f}",
            "x-tokenization-time": f"{outcome.tokenize_s * 1000:.2f}", "x-truncated-inputs": str(outcome.truncated)}


async def metered_reply(service: Service, caller: Caller, route: str, model_ref: str, payload,
                        outcome: Outcome) -> Response:
    """Record the call through the gate (before replying), then reply with the usage headers."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    headers = usage_headers(caller.request_id, model_ref, outcome)
    call = Call(request_id=caller.request_id, route=route, model=model_ref, units=outcome.units,
                idempotency_key=caller.idempotency_key, inference_seconds=outcome.inference_s,
                fingerprint=caller.fingerprint or None,
                extra={"queue_seconds": outcome.queue_s, "truncated": outcome.truncated})
    first = await service.gate.record(caller.principal, call, StoredReply(200, body, headers))
    if first is not None:   # the key was used meanwhile (a claim taken over): its reply, never a second one
        return replay_response(first)
    return Response(body, 200, headers=headers, media_type="application/json")
