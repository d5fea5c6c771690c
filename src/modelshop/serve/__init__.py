"""Serving (seed node E): the HTTP server over the registry's production versions.

    app         create_app(settings, gate, db, routers): FastAPI app, its AppState, the one error
                mapper (status, body and headers), middleware
    deps        typed dependencies of every router: SettingsDep, DbDep, GateDep, ServiceDep, ModelsDep,
                PrincipalDep, AdminDep, CustomerDep, CallerDep
    metering    one `async with metered(request, caller) as m:` per call: the Idempotency-Key claimed,
                admitted, recorded, given back (over `modelshop.gate`'s Meter)
    routes/     /predict (TEI), /models/{name} (Hugging Face), /v1/embeddings (OpenAI), /explain,
                /health, /info, /metrics
    service     the path of one inference request: slot → tokenise → meter.admit → batcher
    pool        the production version of each model, loaded, swapped when a new one is promoted
    batcher     dynamic batching (text-embeddings-inference style) and backpressure
    runners     per family: tokenise on one thread, pad and run a batch on another
    embeddings  minilm sentence embeddings; `embed(texts)` for other parts of the platform
    pooled_models  the apps' `Models` inside the server: the pool's batchers, one copy of each model
    direct_models  the apps' `Models` elsewhere (CLI, library calls): each model loaded once per process
    explain     token attributions (Captum integrated gradients / occlusion; tfidf coefficients)
    metrics     Prometheus collectors of one server
    server      `modelshop serve`: checks, then uvicorn

May import: gate (the seam types), inference, registry, train (base-model names), db, settings, errors —
nothing above it: the composition root (`modelshop.platform`) hands in the gate and the other parts'
routers.
"""

from __future__ import annotations

__all__ = ["create_app", "embed"]


def __getattr__(name: str):  # keep `import modelshop.serve` light: fastapi and torch load on first use
    if name == "create_app":
        from modelshop.serve.app import create_app

        return create_app
    if name == "embed":
        from modelshop.serve.embeddings import embed

        return embed
    raise AttributeError(name)
