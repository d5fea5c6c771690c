"""Using a registered version: evaluate on a labelled file, predict texts, score a file in a stream."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

from modelshop.data import detect_languages, load_dataset
from modelshop.errors import ValidationError, did_you_mean
from modelshop.inference import Predictor, load_predictor
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings
from modelshop.train.metrics import compute_metrics

_cache: dict[str, Predictor] = {}


def predictor_for(ref: str, settings: Settings | None = None) -> tuple[Predictor, object]:
    settings = settings or get_settings()
    registry = Registry.from_settings(settings)
    row = registry.get(ref)
    path = registry.path(row)
    return load_predictor(path, device=settings.device, threads=settings.torch_threads, registered=row), row


def evaluate(ref: str, data_path: Path, *, text_col: str | None = None, label_col: str | None = None,
             settings: Settings | None = None) -> dict:
    """The same figures `train` reports, for version `ref` on a labelled file."""
    predictor, row = predictor_for(ref, settings)
    ds = load_dataset(data_path, text_col, label_col)
    unseen = sorted(set(ds.label_names) - set(predictor.labels))
    if unseen:
        raise ValidationError(f"labels not known to {row.ref}: {', '.join(unseen[:10])}; "
                              f"it knows {', '.join(predictor.labels)}")
    probs = predictor.predict_proba(ds.texts)
    metrics = compute_metrics(ds.labels, probs, predictor.labels, multi_label=predictor.multi_label,
                              threshold=predictor.meta.get("threshold", 0.5),
                              languages=detect_languages(ds.texts))  # per_language, as `train` reports it
    return {"name": row.name, "version": row.version, "data": str(data_path), **metrics}


def predict(ref: str, texts: list[str], *, top_k: int | None = None, settings: Settings | None = None) -> list[dict]:
    """For each text, its labels sorted by score."""
    predictor, row = predictor_for(ref, settings)
    probs = predictor.predict_proba(list(texts))
    out = []
    for text, p in zip(texts, probs, strict=True):
        ranked = sorted(zip(predictor.labels, p.tolist(), strict=True), key=lambda x: -x[1])[:top_k]
        out.append({"text": text, "label": ranked[0][0],
                    "scores": [{"label": lab, "score": round(s, 6)} for lab, s in ranked]})
    return out


def _rows(path: Path, text_col: str | None, chunk: int) -> Iterator[list[dict]]:
    """Chunks of rows of a CSV or JSONL file, read lazily."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".tsv"):
        raise ValidationError(f"batch scoring reads .csv, .tsv or .jsonl files, not {path.suffix or 'no extension'}")
    buf: list[dict] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        if suffix == ".jsonl":
            reader = (json.loads(line) for line in f if line.strip())
        else:
            reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
        try:
            for row in reader:
                buf.append(row)
                if len(buf) >= chunk:
                    yield buf
                    buf = []
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValidationError(f"{path}: cannot read row {len(buf) + 1}: {e}") from None
    if buf:
        yield buf


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 20), b""))


def score_file(ref: str, in_path: Path, out_path: Path, *, text_col: str | None = None, chunk: int = 512,
               settings: Settings | None = None, progress: bool | None = None) -> dict:
    """Score every row of a CSV/JSONL file into a JSONL file (input row + label + score), streamed."""
    settings = settings or get_settings()
    progress = settings.progress if progress is None else progress
    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.is_file():
        raise ValidationError(f"{in_path} does not exist")
    _check_output(out_path)  # before loading the model, so a typo in the path fails at once
    predictor, row = predictor_for(ref, settings)
    total = _count_lines(in_path) - (0 if in_path.suffix.lower() == ".jsonl" else 1)
    # written beside the output and renamed at the end, so a reader never sees half a file;
    # removed again when scoring fails part-way
    tmp = out_path.with_name(out_path.name + ".partial")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as out, tqdm(total=max(total, 0), unit="row",
                                                           desc=f"scoring with {row.ref}", disable=not progress) as bar:
            for rows in _rows(in_path, text_col, chunk):
                col = text_col or next((c for c in ("text", "sentence", "content", "message") if c in rows[0]), None)
                if col is None or col not in rows[0]:
                    found = list(rows[0])
                    raise ValidationError(f'no text column "{text_col or "text"}" in {in_path}; found: '
                                          f'{", ".join(found)}{did_you_mean(text_col or "text", found)}')
                texts = [str(r.get(col) or "") for r in rows]
                probs = predictor.predict_proba(texts)
                for r, p in zip(rows, probs, strict=True):
                    best = int(p.argmax())
                    out.write(json.dumps({**r, "label": predictor.labels[best], "score": round(float(p[best]), 6)},
                                         ensure_ascii=False) + "\n")
                n += len(rows)
                bar.update(len(rows))
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"model": row.ref, "rows": n, "output": str(out_path)}


def _check_output(out_path: Path) -> None:
    if out_path.is_dir():
        raise ValidationError(f"output {out_path} is a folder; name a file in it, e.g. {out_path / 'scored.jsonl'}")
    if not out_path.parent.is_dir():
        raise ValidationError(f"output folder {out_path.parent} does not exist; create it first "
                              f"(mkdir -p {out_path.parent}) or write the output elsewhere")
