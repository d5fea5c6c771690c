"""Classification: `POST /predict` (text-embeddings-inference shape) and `POST /models/{name}`
(Hugging Face Inference API shape, so `huggingface_hub.InferenceClient` works unchanged)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query, Request

from modelshop.inference.base import probabilities
from modelshop.serve.deps import CallerDep, ServiceDep
from modelshop.serve.metering import metered
from modelshop.serve.pool import ServedModel
from modelshop.serve.routes import ERRORS
from modelshop.serve.schemas import ClassifyParameters, ClassifyRequest, Prediction, PredictRequest, tei_sequences

router = APIRouter(tags=["classification"])

ModelQuery = Annotated[str | None, Query(
    min_length=1, max_length=100,
    description="registered model name; default: the only model in production, else MODELSHOP_DEFAULT_MODEL")]


def ranked(row: np.ndarray, served: ServedModel, function: str | None) -> list[dict]:
    """Labels with their scores, best first; `function` None: softmax or sigmoid as the model was trained."""
    scores = probabilities(np.asarray(row)[None, :], served.multi_label, function)[0]
    return [{"label": served.labels[j], "score": float(scores[j])} for j in np.argsort(-scores, kind="stable")]


@router.post("/predict", response_model=list[Prediction] | list[list[Prediction]], responses=ERRORS)
async def predict(body: PredictRequest, request: Request, service: ServiceDep, caller: CallerDep,
                  model: ModelQuery = None):
    """Classify a text, a pair of texts, or a batch of them (TEI's `/predict`)."""
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        seqs, single = tei_sequences(body.inputs)
        served = await service.pool.get(model)
        outcome = await service.infer(request, m, served, seqs, truncate=service.truncate(body.truncate),
                                      direction=body.truncation_direction)
        function = "none" if body.raw_scores else None
        out = [ranked(row, served, function) for row in outcome.rows]
        return await m.reply(served.ref, out[0] if single else out, outcome)


@router.post("/models/{name}", response_model=list[list[Prediction]], responses=ERRORS)
async def classify(name: Annotated[str, Path(min_length=1, max_length=100, description="registered model name")],
                   body: ClassifyRequest, request: Request, service: ServiceDep, caller: CallerDep):
    """Classify one text or a list of texts (Hugging Face Inference API): one list of labels per text."""
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        texts = [body.inputs] if isinstance(body.inputs, str) else list(body.inputs)
        params = body.parameters or ClassifyParameters()
        served = await service.pool.get(name)
        outcome = await service.infer(request, m, served, [(t, None) for t in texts],
                                      truncate=service.truncate(params.truncation))
        out = [ranked(row, served, params.function_to_apply)[:params.top_k] for row in outcome.rows]
        return await m.reply(served.ref, out, outcome)
