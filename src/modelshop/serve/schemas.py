"""Request and response bodies of the HTTP API (what /openapi.json documents).

`POST /predict` follows text-embeddings-inference exactly (its `PredictInput` deserializer):
    "text"                         one text                        → [{label, score}, ...]
    ["text"]                       one text                        → [{label, score}, ...]
    ["text", "text_pair"]          ONE PAIR of texts (not a batch) → [{label, score}, ...]
    [["a"], ["b", "b_pair"], ...]  a batch of texts and pairs      → [[{label, score}, ...], ...]
A list of three or more strings is refused: TEI reads a flat list as a single text or pair, so a
batch of texts is written [["a"], ["b"], ["c"]].
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelshop.errors import ValidationError
from modelshop.serve.runners import Seq

TEI_INPUTS = ('a string, a pair of strings ["text", "text_pair"], or a batch of single texts and pairs '
              '[["text"], ["text", "text_pair"], ...]')


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": "I loved this film"}, {"inputs": [["great"], ["awful", "really?"]], "raw_scores": False}]})
    inputs: str | list[str | list[str]] = Field(description="TEI input: " + TEI_INPUTS)
    raw_scores: bool = Field(False, description="logits instead of probabilities (still sorted by score)")
    truncate: bool | None = Field(None, description="cut inputs longer than the model's max length instead of "
                                                    "answering 413; default: the server's auto_truncate")
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        "right", description="which end to cut when truncating")


class ClassifyParameters(Strict):
    top_k: int | None = Field(None, ge=1, le=10_000, description="return only the k best labels")
    function_to_apply: Literal["sigmoid", "softmax", "none"] | None = Field(
        None, description="default: softmax for single-label models, sigmoid for multi-label ones")
    truncation: bool | None = Field(None, description="modelshop extension: as /predict's truncate")


class ClassifyRequest(Strict):
    """The Hugging Face Inference API's text-classification body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"inputs": "I loved this film", "parameters": {"top_k": 2}}]})
    inputs: str | list[str] = Field(description="one text or a list of texts")
    parameters: ClassifyParameters | None = None
    options: dict | None = Field(None, description="accepted for compatibility (wait_for_model, use_cache); unused")


class EmbeddingsRequest(Strict):
    """OpenAI's embeddings body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"input": ["How do I reset my password?"], "model": "minilm"}]})
    input: str | list[str] = Field(description="a text or a list of texts")
    model: str | None = Field(None, max_length=300,
                              description="the embedding model: minilm (all-MiniLM-L6-v2); default: the server's")
    encoding_format: Literal["float", "base64"] = Field(
        "float", description="base64: each vector as little-endian float32 bytes, base64-encoded")
    dimensions: int | None = Field(None, ge=1, le=100_000,
                                   description="keep the first N dimensions, re-normalised")
    user: str | None = Field(None, max_length=256, description="accepted for compatibility; unused")


class ExplainRequest(Strict):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"inputs": "I loved this film"}]})
    inputs: str = Field(description="the text to explain")
    target: str | None = Field(None, description="label to explain; default: the predicted one")
    method: Literal["integrated_gradients", "occlusion", "coefficients"] | None = Field(
        None, description="default: integrated_gradients (PyTorch), occlusion (int8/ONNX), coefficients (tfidf)")
    truncate: bool | None = Field(None, description="as /predict")


class Prediction(BaseModel):
    label: str
    score: float


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class ErrorBody(BaseModel):
    error: str = Field(description="what went wrong and what to do about it")
    error_type: str = Field(description="stable machine-readable kind: validation, not_found, overloaded, ...")


# (route, location of the object) → its fields, to answer a misspelt field with "did you mean".
ROUTE_FIELDS = {(route, loc): list(model.model_fields) for route, loc, model in (
    ("/predict", (), PredictRequest), ("/models/{name}", (), ClassifyRequest),
    ("/models/{name}", ("parameters",), ClassifyParameters), ("/v1/embeddings", (), EmbeddingsRequest),
    ("/explain", (), ExplainRequest))}


def tei_sequences(inputs) -> tuple[list[Seq], bool]:
    """TEI's reading of `inputs`: (texts and pairs, whether it was a single input)."""
    if isinstance(inputs, str):
        return [(inputs, None)], True
    if not inputs:
        raise ValidationError("inputs is an empty list; send " + TEI_INPUTS)
    if all(isinstance(x, str) for x in inputs):
        if len(inputs) > 2:
            raise ValidationError(
                f"inputs is a flat list of {len(inputs)} strings; TEI reads a flat list as one text or one pair "
                f'["text", "text_pair"]: for a batch send [["text"], ["text"], ...]')
        return [(inputs[0], inputs[1] if len(inputs) == 2 else None)], True
    if all(isinstance(x, list) for x in inputs):
        seqs = []
        for i, item in enumerate(inputs):
            if len(item) not in (1, 2):
                raise ValidationError(f"inputs[{i}] has {len(item)} strings; each batch entry is [text] or "
                                      "[text, text_pair]")
            seqs.append((item[0], item[1] if len(item) == 2 else None))
        return seqs, False
    raise ValidationError("inputs mixes strings and lists; send " + TEI_INPUTS)
