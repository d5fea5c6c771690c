"""`POST /explain`: which tokens pushed the model to its answer (see `modelshop.serve.explain`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request

from modelshop.gate import Units
from modelshop.serve.deps import CallerDep, ServiceDep
from modelshop.serve.explain import TfidfExplainer, explain_transformer, pick_method
from modelshop.serve.metering import metered
from modelshop.serve.routes import ERRORS
from modelshop.serve.routes.predict import ModelQuery
from modelshop.serve.schemas import ExplainRequest
from modelshop.serve.service import Outcome, until_disconnect

router = APIRouter(tags=["explanation"])


@router.post("/explain", responses=ERRORS)
async def explain(body: ExplainRequest, request: Request, service: ServiceDep, caller: CallerDep,
                  model: ModelQuery = None):
    """Token attributions for the predicted label (or `target`), with the label's score."""
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        served = await service.pool.get(model)
        method = pick_method(served.family, served.format, body.method)
        seqs = [(body.inputs, None)]
        service.check_texts(seqs)
        steps = service.settings.explain_steps
        with service.slots.take():
            encoded, tokenize_s = await served.prepare(seqs, service.truncate(body.truncate), "right")
            units = Units(requests=1, tokens=encoded[0].tokens, characters=len(body.inputs))
            await m.admit(served.ref, units)

            def work() -> dict:
                if served.family == "tfidf":
                    explainer = served.extras.get("explainer") or served.extras.setdefault(
                        "explainer", TfidfExplainer(served.predictor))
                    return explainer.explain(body.inputs, body.target)
                return explain_transformer(served.runner, encoded[0], body.target, method, steps,
                                           served.multi_label)

            started = time.perf_counter()
            result = await until_disconnect(request, served.on_model_thread(work))
        outcome = Outcome([], units, 0.0, time.perf_counter() - started, tokenize_s, int(encoded[0].truncated))
        payload = {"model": served.ref, **result}
        if method == "integrated_gradients":
            payload["steps"] = steps
        return await m.reply(served.ref, payload, outcome)
