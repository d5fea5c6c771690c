"""File-to-file tasks behind `modelshop data profile|clean`: load, do one thing, write the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .clean import clean_dataset
from .load import load_dataset
from .profile import profile_dataset
from .report import write_report


def profile_file(path: Path, *, text_col: str | None = None, label_col: str | None = None,
                 eval_path: Path | None = None, tokenizer: Any = None, report_dir: Path | None = None,
                 max_model_length: int = 512, base_model: str | None = None) -> dict:
    """The profile of a file (and its leakage into `eval_path`), with an HTML report if asked;
    `base_model` names the model of `tokenizer` in the language-coverage warnings."""
    ds = load_dataset(path, text_col, label_col)
    eval_ds = load_dataset(eval_path, ds.text_col, ds.label_col) if eval_path else None
    profile = profile_dataset(ds, tokenizer, eval_ds, max_model_length=max_model_length,
                              base_model=base_model)
    if report_dir is not None:
        profile["report"] = str(write_report(profile, Path(report_dir), title=f"Data profile: {Path(path).name}"))
    return profile


def clean_file(path: Path, out: Path, *, text_col: str | None = None, label_col: str | None = None,
               redact: bool = True) -> dict:
    """Clean a file into JSONL (text, label); returns the counts of what was done."""
    ds = load_dataset(path, text_col, label_col)
    cleaned, counts = clean_dataset(ds, redact=redact)
    cleaned.to_jsonl(Path(out))
    return {**counts, "rows_in": len(ds), "rows_out": len(cleaned), "output": str(out)}
