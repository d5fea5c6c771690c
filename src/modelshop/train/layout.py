"""What a version's folder holds for what it deploys: a transformer, the tfidf model, or both as an ensemble.

    write_transformer(folder, fit, meta)   weights and tokenizer (save_pretrained) + modelshop.json
    write_tfidf(folder, pipeline, meta)    tfidf.joblib + modelshop.json
    write_ensemble(folder, fit, pipeline, ...)
                                           transformer/ and tfidf/, each a folder of the above, and the
                                           ensemble's modelshop.json with its weights (read by
                                           `modelshop.inference.ensemble`)

Each returns the folder's modelshop.json (also written), which `load_predictor` reads to pick the family.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelshop.inference import META_FILE
from modelshop.inference.ensemble import PARTS
from modelshop.train.tfidf import save_tfidf


def tfidf_meta(labels: list[str], multi_label: bool, threshold: float) -> dict:
    return {"family": "tfidf", "format": "sklearn", "labels": labels, "multi_label": multi_label,
            "max_length": 1_000_000, "base_model": "tfidf", "threshold": threshold}


def transformer_meta(labels: list[str], multi_label: bool, max_length: int, base_model: str, threshold: float) -> dict:
    return {"family": "transformer", "format": "pytorch", "labels": labels, "multi_label": multi_label,
            "max_length": max_length, "base_model": base_model, "threshold": threshold}


def _write_meta(folder: Path, meta: dict) -> dict:
    (folder / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
    return meta


def write_transformer(folder: Path, fit, meta: dict) -> dict:
    fit.model.save_pretrained(folder)
    fit.tokenizer.save_pretrained(folder)
    return _write_meta(folder, meta)


def write_tfidf(folder: Path, pipeline, meta: dict) -> dict:
    save_tfidf(pipeline, folder)
    return _write_meta(folder, meta)


def write_ensemble(folder: Path, fit, pipeline, transformer: dict, tfidf: dict, *, weights: dict,
                   languages: list[str]) -> dict:
    """Both parts in folders of their own, and the ensemble's modelshop.json over them."""
    for name in PARTS:
        (folder / name).mkdir()
    write_transformer(folder / "transformer", fit, transformer)
    write_tfidf(folder / "tfidf", pipeline, tfidf)
    meta = {"family": "ensemble", "format": "ensemble", "labels": transformer["labels"],
            "multi_label": transformer["multi_label"], "max_length": transformer["max_length"],
            "base_model": f"{transformer['base_model']} + tfidf", "threshold": transformer["threshold"],
            "weights": weights, "languages": list(languages),
            "parts": {"transformer": transformer["base_model"], "tfidf": "tfidf"}}
    return _write_meta(folder, meta)
