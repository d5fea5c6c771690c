"""`POST /v1/embeddings`: OpenAI's embeddings shape, so the `openai` client works with a base_url."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request

from modelshop.errors import NotFound, ValidationError, did_you_mean
from modelshop.serve.deps import CallerDep, ServiceDep
from modelshop.serve.embeddings import MINILM_NAMES, accepts
from modelshop.serve.metering import metered
from modelshop.serve.routes import ERRORS
from modelshop.serve.schemas import EmbeddingsRequest, EmbeddingsResponse

router = APIRouter(tags=["embeddings"])


@router.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=ERRORS)
async def embeddings(body: EmbeddingsRequest, request: Request, service: ServiceDep, caller: CallerDep):
    """Unit-length sentence embeddings (mean-pooled all-MiniLM-L6-v2); cosine similarity is a dot product."""
    async with metered(request, caller) as m:
        if m.replay is not None:
            return m.replay
        configured = service.settings.embedding_model
        names = MINILM_NAMES if configured == "minilm" else (configured,)
        asked = body.model or names[0]
        if not accepts(configured, body.model):
            raise NotFound(f'no embedding model "{body.model}" here{did_you_mean(body.model, names)}; '
                           f'this server embeds with "{names[0]}"')
        served = await service.pool.embedder()
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        outcome = await service.infer(request, m, served, [(t, None) for t in texts],
                                      truncate=service.settings.auto_truncate)
        vectors = np.stack(outcome.rows).astype(np.float32)
        if body.dimensions is not None:
            if body.dimensions > vectors.shape[1]:
                raise ValidationError(f"dimensions {body.dimensions} is more than the model gives "
                                      f"({vectors.shape[1]}); ask for at most {vectors.shape[1]}")
            vectors = vectors[:, :body.dimensions]
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        data = [{"object": "embedding", "index": i,
                 "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode()
                               if body.encoding_format == "base64" else v.tolist())}
                for i, v in enumerate(vectors)]
        payload = {"object": "list", "data": data, "model": asked,
                   "usage": {"prompt_tokens": outcome.units.tokens, "total_tokens": outcome.units.tokens}}
        return await m.reply(served.ref, payload, outcome)
