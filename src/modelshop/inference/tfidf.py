"""The classical TF-IDF + linear model family (scikit-learn), stored with joblib.

Unpickling runs whatever code the file names, so a joblib file is loaded only once its bytes
match the SHA-256 the registry recorded when the version was registered (`load_pickle`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping
from pathlib import Path

import joblib
import numpy as np

from modelshop.errors import ModelError
from modelshop.inference.base import Predictor

PIPELINE_FILE = "tfidf.joblib"
FILES_KEY = "files_sha256"  # where the registry records the hashes, in the row and in modelshop.json

log = logging.getLogger("modelshop.inference")


def load_pickle(folder: Path, name: str, files_sha256: Mapping[str, str] | None, what: str):
    """Unpickle `folder/name` if its bytes have the SHA-256 recorded for `name` at registration.

    The bytes are read once, hashed, and unpickled from memory, so the file checked is the file
    loaded. `what` names the version in the error ("toy:3", or the folder when no row is at hand).
    """
    data = (Path(folder) / name).read_bytes()
    if files_sha256 is None:
        # Versions registered before hashes were recorded have none. They were written by the
        # platform itself, into a folder only it writes, so they still load rather than break
        # every existing deployment at upgrade; re-registering one records its hashes.
        log.warning("model file %s of %s has no SHA-256 recorded (registered before hashes were); "
                    "loading it unchecked; re-register it to have it checked", name, what)
    else:
        digest = hashlib.sha256(data).hexdigest()
        recorded = files_sha256.get(name)
        if recorded is None:
            raise ModelError(f"model file {name} of {what} was not part of it at registration "
                             f"(sha256 {digest}); re-register it")
        if digest != recorded:
            raise ModelError(f"model file {name} of {what} changed since registration (sha256 {digest}, "
                             f"registered {recorded}); re-register it")
    return joblib.load(io.BytesIO(data))


class TfidfPredictor(Predictor):
    family = "tfidf"
    format = "sklearn"

    def __init__(self, path: Path, meta: dict, *, ref: str | None = None,
                 files_sha256: Mapping[str, str] | None = None) -> None:
        """`files_sha256`: the hashes from the registry row (else the copy in modelshop.json is used)."""
        self.meta = meta
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.max_length = int(meta.get("max_length", 1_000_000))
        expected = files_sha256 if files_sha256 is not None else meta.get(FILES_KEY)
        self.pipeline = load_pickle(path, PIPELINE_FILE, expected, ref or str(path))

    def count_tokens(self, texts: list[str]) -> list[int]:
        analyzer = self.pipeline.named_steps["features"].transformer_list[0][1].build_analyzer()
        return [len(analyzer(t)) for t in texts]

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        return decision_logits(self.pipeline, texts, self.multi_label)


def decision_logits(pipeline, texts: list[str], multi_label: bool) -> np.ndarray:
    """Scores whose softmax (single-label) or sigmoid (multi-label) is the model's probability."""
    scores = np.asarray(pipeline.decision_function(list(texts)), dtype=np.float64)
    if scores.ndim == 1:  # binary logistic regression: p(class 1) = sigmoid(d) = softmax([0, d])
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    return scores
