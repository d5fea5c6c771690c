"""Metering as routes use it: one `MeteredCall` per call, opened by `metered(request, caller)`.

    async with metered(request, caller) as m:       claims the Idempotency-Key before any work: the
        if m.replay is not None:                     stored reply of the same request (422 for another
            return m.replay                          request, 409 while the first is under way)
        outcome = await service.infer(request, m, served, seqs, ...)     admits, once units are known
        return await m.reply(served.ref, payload, outcome)               records (durable before the
                                                                         reply leaves), usage headers
    # leaving the block gives back what was admitted and never recorded, and the key's claim

The route's path template (`/models/{name}`) is what the call is metered and claimed under, taken
from the matched route, so no route names it twice. Keys are never logged: only the principal's
display label is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response

from modelshop.gate import Call, Meter, StoredReply, Units
from modelshop.serve.deps import Caller, app_state
from modelshop.serve.service import Outcome


class MeteredCall:
    """One call's meter, in HTTP terms: the replay as a Response, the reply built and recorded."""

    def __init__(self, meter: Meter, caller: Caller, route: str) -> None:
        self.meter, self.caller, self.route = meter, caller, route

    @property
    def replay(self) -> Response | None:
        stored = self.meter.replay
        return None if stored is None else replay_response(stored)

    async def admit(self, model_ref: str, units: Units) -> None:
        await self.meter.admit(model_ref, units)

    async def reply(self, model_ref: str, payload, outcome: Outcome, *, extra: dict | None = None,
                    headers: dict[str, str] | None = None) -> Response:
        """Record the call (durable before the reply leaves), then reply with the usage headers — or with
        the first call's stored reply, when its Idempotency-Key was used meanwhile."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {**usage_headers(self.caller.request_id, model_ref, outcome), **(headers or {})}
        call = Call(request_id=self.caller.request_id, route=self.route, model=model_ref, units=outcome.units,
                    inference_seconds=outcome.inference_s,
                    extra={"queue_seconds": outcome.queue_s, "truncated": outcome.truncated, **(extra or {})})
        mine = StoredReply(200, body, headers)
        sent = await self.meter.record(call, mine)
        if sent is not mine:
            return replay_response(sent)
        return Response(body, 200, headers=headers, media_type="application/json")


    async def record_stream(self, model_ref: str, outcome: Outcome, *, extra: dict | None = None) -> None:
        """Record a streamed call (it has no stored reply: a stream is never replayed)."""
        call = Call(request_id=self.caller.request_id, route=self.route, model=model_ref, units=outcome.units,
                    inference_seconds=outcome.inference_s,
                    extra={"queue_seconds": outcome.queue_s, "stream": True, **(extra or {})})
        headers = usage_headers(self.caller.request_id, model_ref, outcome)
        await self.meter.record(call, StoredReply(200, b"", headers))


@contextlib.asynccontextmanager
async def metered(request: Request, caller: Caller) -> AsyncIterator[MeteredCall]:
    """The call's meter, under the matched route's path template."""
    route = getattr(request.scope.get("route"), "path", None) or request.url.path
    gate = app_state(request).gate
    async with gate.metered(caller.principal, route, idempotency_key=caller.idempotency_key,
                            fingerprint=caller.fingerprint, request_id=caller.request_id) as meter:
        yield MeteredCall(meter, caller, route)


def replay_response(stored: StoredReply) -> Response:
    return Response(stored.body, stored.status, headers={**stored.headers, "x-idempotent-replay": "true"},
                    media_type="application/json")


def usage_headers(request_id: str, model_ref: str, outcome: Outcome) -> dict[str, str]:
    return {"x-request-id": request_id, "x-model": model_ref,
            "x-compute-tokens": str(outcome.units.tokens), "x-compute-characters": str(outcome.units.characters),
            "x-queue-time": f"{outcome.queue_s * 1000:.2f}", "x-inference-time": f"{outcome.inference_s * 1000:.2f}",
            "x-tokenization-time": f"{outcome.tokenize_s * 1000:.2f}", "x-truncated-inputs": str(outcome.truncated),
            **({"x-input-tokens": str(outcome.units.input_tokens), "x-output-tokens": str(outcome.units.output_tokens)}
               if outcome.units.input_tokens else {})}
