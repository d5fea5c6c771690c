"""Operations: `GET /health` (no key), `GET /info` and `GET /metrics` (the admin key or the metrics key).

/info and /metrics tell an outsider which models run, their limits and the traffic of every customer,
so they take the operator's keys only: `MODELSHOP_ADMIN_KEY`, or `MODELSHOP_METRICS_KEY` for a
scraper that should hold no admin power. /health stays open: load balancers call it without a key.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

import modelshop
from modelshop.errors import Forbidden
from modelshop.serve.deps import GateDep, ServiceDep, SettingsDep, bearer
from modelshop.serve.pool import NONE_REGISTERED
from modelshop.serve.routes import ERRORS
from modelshop.serve.routes.predict import ModelQuery

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(service: ServiceDep, gate: GateDep):
    """200 while the server can answer: lists what is served, what failed to load, and Redis when it is used.

    "degraded" (still 200, so a load balancer keeps the replica) when a model failed to load or Redis
    is unreachable; 503 "unavailable" only when models are registered and none of them could be loaded."""
    pool = service.pool
    await pool.refresh()
    served = {name: m.ref for name, m in sorted(pool.served.items())}
    failed = pool.failures()
    body: dict = {"models": served, "failed": failed}
    if not pool.production:
        body["note"] = NONE_REGISTERED
    redis = await _redis_state(gate)
    if redis is not None:
        body["redis"] = redis
    if pool.production and not served:
        status = "unavailable"
    elif failed or redis == "unreachable":
        status = "degraded"
    else:
        status = "ok"
    return JSONResponse({"status": status, **body}, status_code=503 if status == "unavailable" else 200)


async def _redis_state(gate) -> str | None:
    """Redis as the gate last reached it ("ok" or "unreachable"), or None when the gate uses no Redis."""
    check = getattr(getattr(gate, "limiter", None), "health", None)
    return await check() if check is not None else None


async def operator(request: Request, settings: SettingsDep, gate: GateDep,
                   credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
    """The admin key (through the gate: 401 for no key or an unknown one) or the metrics key; 403 for any other."""
    token = credentials.credentials if credentials else None
    metrics_key = settings.metrics_key
    if token and metrics_key is not None and hmac.compare_digest(token.encode(),
                                                                 metrics_key.get_secret_value().encode()):
        return
    principal = await gate.authenticate(token)
    if principal.kind != "admin":
        raise Forbidden(f"{request.url.path} is for operators: send the admin key or MODELSHOP_METRICS_KEY, "
                        "not a customer's key")


@router.get("/info", responses=ERRORS, dependencies=[Depends(operator)])
async def info(service: ServiceDep, model: ModelQuery = None):
    """The model a request would reach (as text-embeddings-inference's /info), and the server's limits."""
    served = await service.pool.get(model)
    s = service.settings
    return {
        "model_id": served.name, "model_version": served.version, "model_ref": served.ref,
        "family": served.family, "format": served.format, "multi_label": served.multi_label,
        "labels": served.labels,
        "model_type": {"classifier": {"id2label": dict(enumerate(served.labels)),
                                      "label2id": {lab: i for i, lab in enumerate(served.labels)}}},
        "max_input_length": served.max_length, "trained_length": served.trained_length,
        "max_input_chars": s.max_input_chars,
        "max_batch_tokens": s.max_batch_tokens, "max_batch_requests": s.max_batch_requests,
        "max_concurrent_requests": s.max_concurrent_requests, "max_client_batch_size": s.max_inputs_per_request,
        "max_wait_ms": s.max_wait_ms, "auto_truncate": s.auto_truncate,
        "served_models": sorted(service.pool.served), "embedding_model": s.embedding_model,
        "version": modelshop.__version__,
    }


@router.get("/metrics", responses=ERRORS, dependencies=[Depends(operator)])
async def metrics(service: ServiceDep):
    """Prometheus text: requests and failures by route, queue/tokenisation/inference times, batch sizes."""
    m = service.metrics
    return Response(m.render(), media_type=m.content_type)
