"""A fine-tuned transformer and the tfidf model served together as one version (family "ensemble").

Chosen by training when the two are strong on different languages or classes (`modelshop.train.ensemble`):
minilm reads English well and Chinese barely (most Chinese characters are [UNK] to it), while tfidf's
character n-grams read both. The folder holds each part as a complete model folder of its own,

    transformer/   the fine-tuned transformer (weights, tokenizer, modelshop.json)
    tfidf/         the tfidf pipeline (tfidf.joblib, modelshop.json)
    modelshop.json family "ensemble", the labels, the mixing weights and the languages told apart

and the probability of each label is  w · p_transformer + (1 − w) · p_tfidf,  with w the weight of
the text's language (`weights["per_language"]`), or `weights["default"]` for a text in any other
language or none. The language of a text is told by lingua among the languages of the validation
split (`languages`), one text at a time (`text_languages`), so a text gets the same answer whatever batch it is in, and
training chose the weights on the very codes serving computes.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from modelshop.errors import ValidationError
from modelshop.inference.base import Predictor, probabilities

PARTS = ("transformer", "tfidf")
OTHER = "*"        # the code of a text in none of the weighted languages (or in no language lingua can tell)
EPS = 1e-7         # probabilities are clipped this far from 0 and 1 before they are turned back into logits


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]):
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    return LanguageDetectorBuilder.from_languages(
        *(Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in languages)).build()


def text_languages(texts: list[str], languages: list[str] | tuple[str, ...]) -> list[str]:
    """The code of each text's language among `languages` (ISO 639-1), or OTHER where none fits.

    Per text, not per corpus: unlike `modelshop.data.detect_languages` (which leans on the languages
    the rest of a dataset is in), a text's code does not depend on the texts beside it in a batch."""
    languages = tuple(sorted(languages))
    if len(languages) < 2:  # nothing to tell apart: every text takes the default weight
        return [OTHER] * len(texts)
    found = _detector(languages).detect_languages_in_parallel_of([t[:300] for t in texts])
    return [lang.iso_code_639_1.name.lower() if lang is not None else OTHER for lang in found]


def mix(p_transformer: np.ndarray, p_tfidf: np.ndarray, codes: list[str], weights: Mapping) -> np.ndarray:
    """w · p_transformer + (1 − w) · p_tfidf, row by row, w by the row's language code."""
    per, default = weights.get("per_language") or {}, float(weights["default"])
    w = np.array([float(per.get(code, default)) for code in codes], dtype=np.float64)[:, None]
    return w * np.asarray(p_transformer, np.float64) + (1.0 - w) * np.asarray(p_tfidf, np.float64)


def as_logits(probs: np.ndarray, multi_label: bool) -> np.ndarray:
    """Scores whose softmax (single-label) or sigmoid (multi-label) gives `probs` back."""
    p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p)) if multi_label else np.log(p)


def check_weights(weights: Mapping) -> None:
    values = [weights.get("default"), *(weights.get("per_language") or {}).values()]
    if any(not isinstance(v, (int, float)) or not 0 <= v <= 1 for v in values):
        raise ValidationError(f"ensemble weights must be numbers in [0, 1], got {dict(weights)}")


class EnsemblePredictor(Predictor):
    family = "ensemble"
    format = "ensemble"

    def __init__(self, path: Path, meta: dict, *, device: str = "cpu", threads: int | None = None,
                 ref: str | None = None, files_sha256: Mapping[str, str] | None = None) -> None:
        from modelshop.inference import read_meta
        from modelshop.inference.tfidf import FILES_KEY, TfidfPredictor
        from modelshop.inference.transformer import TransformerPredictor

        path = Path(path)
        self.meta = meta
        self.labels = list(meta["labels"])
        self.multi_label = bool(meta.get("multi_label", False))
        self.weights = meta["weights"]
        check_weights(self.weights)
        self.languages = list(meta.get("languages") or self.weights.get("per_language") or [])
        parts = {name: read_meta(path / name) for name in PARTS}
        for name, part in parts.items():
            if list(part["labels"]) != self.labels:
                raise ValidationError(f"{path}: the {name} part's labels {part['labels']} are not the ensemble's "
                                      f"{self.labels}")
        self.transformer = TransformerPredictor(path / "transformer", parts["transformer"], device=device,
                                                threads=threads)
        # the parts' files are hashed in the ensemble's own record, under their folder's name
        recorded = files_sha256 if files_sha256 is not None else meta.get(FILES_KEY)
        tfidf_hashes = None if recorded is None else {
            k.removeprefix("tfidf/"): v for k, v in recorded.items() if k.startswith("tfidf/")}
        self.tfidf = TfidfPredictor(path / "tfidf", parts["tfidf"], ref=ref, files_sha256=tfidf_hashes)
        # what the server and the apps read of a classifier: the transformer part's lengths and tokenizer
        self.tokenizer = self.transformer.tokenizer
        self.input_limit = self.transformer.input_limit
        self.trained_length = self.transformer.trained_length
        self.max_length = self.transformer.max_length

    def count_tokens(self, texts: list[str]) -> list[int]:
        """The transformer part's tokens: the metered units, as for a transformer alone."""
        return self.transformer.count_tokens(texts)

    def combine(self, transformer_logits: np.ndarray, texts: list[str]) -> np.ndarray:
        """The ensemble's logits, given the transformer part's logits for `texts` (the server runs that
        part on token ids it prepared; the tfidf part and the languages are computed here)."""
        p_tr = probabilities(transformer_logits, self.multi_label)
        p_tf = self.tfidf.predict_proba(texts)
        return as_logits(mix(p_tr, p_tf, text_languages(texts, self.languages), self.weights), self.multi_label)

    def logits(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        return self.combine(self.transformer.logits(texts, batch_size=batch_size), texts)
