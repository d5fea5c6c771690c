"""Load a finished model folder and run it: one `Predictor` interface over every model family.

Used by evaluation, batch scoring, the server and the apps. A folder holds `modelshop.json`
(family, format, labels, multi_label, max_length) beside the family's own files: a transformer's
weights and tokenizer, tfidf's pipeline, or, for an ensemble of the two, a folder of each.
`inference.models` is the `Models` interface the apps call models through (classify, embed,
count_tokens); the server and the CLI each back it (`serve.pooled_models`, `serve.direct_models`).
May import: errors, settings.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelshop.errors import ValidationError
from modelshop.inference.base import Predictor, probabilities

META_FILE = "modelshop.json"

__all__ = ["Predictor", "load_predictor", "read_meta", "probabilities", "META_FILE"]


def read_meta(path: Path) -> dict:
    meta_path = Path(path) / META_FILE
    if not meta_path.is_file():
        raise ValidationError(f"{path} is not a modelshop model folder (no {META_FILE})")
    return json.loads(meta_path.read_text())


def load_predictor(path: Path, *, device: str = "cpu", threads: int | None = None,
                   registered=None) -> Predictor:
    """The predictor for the model folder at `path`, whatever its family and format.

    `registered`: its registry row (anything with `ref` and `files_sha256`), whose recorded hashes
    a pickled file must match before it is loaded; without it, the copy in modelshop.json is used.
    """
    meta = read_meta(path)
    family, fmt = meta["family"], meta.get("format", "pytorch")
    if family == "tfidf":
        from modelshop.inference.tfidf import TfidfPredictor

        return TfidfPredictor(Path(path), meta, ref=getattr(registered, "ref", None),
                              files_sha256=getattr(registered, "files_sha256", None))
    if family == "ensemble":
        from modelshop.inference.ensemble import EnsemblePredictor

        return EnsemblePredictor(Path(path), meta, device=device, threads=threads, ref=getattr(registered, "ref", None),
                                 files_sha256=getattr(registered, "files_sha256", None))
    if fmt == "onnx":
        from modelshop.inference.onnx import OnnxPredictor  # added with model compression

        return OnnxPredictor(Path(path), meta, threads=threads)
    from modelshop.inference.transformer import TransformerPredictor

    return TransformerPredictor(Path(path), meta, device=device, threads=threads)

