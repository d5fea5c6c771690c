"""Operations: `GET /health` (no key), `GET /info` (TEI-like description of a model), `GET /metrics`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

import modelshop
from modelshop.serve.gate import Principal
from modelshop.serve.metering import get_principal, service_of
from modelshop.serve.routes import ERRORS
from modelshop.serve.routes.predict import ModelQuery

router = APIRouter(tags=["operations"])


@router.get("/health")
async def health(request: Request):
    """200 while at least one model is served; lists what is served and what failed to load."""
    pool = service_of(request).pool
    await pool.refresh()
    served = {name: m.ref for name, m in sorted(pool.served.items())}
    failed = pool.failures()
    status = "ok" if served and not failed else ("degraded" if served else "unavailable")
    return JSONResponse({"status": status, "models": served, "failed": failed},
                        status_code=200 if served else 503)


@router.get("/info", responses=ERRORS)
async def info(request: Request, model: ModelQuery = None, principal: Principal = Depends(get_principal)):
    """The model a request would reach (as text-embeddings-inference's /info), and the server's limits."""
    service = service_of(request)
    served = await service.pool.get(model)
    s = service.settings
    return {
        "model_id": served.name, "model_version": served.version, "model_ref": served.ref,
        "family": served.family, "format": served.format, "multi_label": served.multi_label,
        "labels": served.labels,
        "model_type": {"classifier": {"id2label": dict(enumerate(served.labels)),
                                      "label2id": {lab: i for i, lab in enumerate(served.labels)}}},
        "max_input_length": served.max_length, "max_input_chars": s.max_input_chars,
        "max_batch_tokens": s.max_batch_tokens, "max_batch_requests": s.max_batch_requests,
        "max_concurrent_requests": s.max_concurrent_requests, "max_client_batch_size": s.max_inputs_per_request,
        "max_wait_ms": s.max_wait_ms, "auto_truncate": s.auto_truncate,
        "served_models": sorted(service.pool.served), "embedding_model": s.embedding_model,
        "version": modelshop.__version__,
    }


@router.get("/metrics", responses=ERRORS)
async def metrics(request: Request, principal: Principal = Depends(get_principal)):
    """Prometheus text: requests and failures by route, queue/tokenisation/inference times, batch sizes."""
    m = service_of(request).metrics
    return Response(m.render(), media_type=m.content_type)
