"""`load_dataset`: any supported file or label folder → a `Dataset`, with columns mapped.

Owns column detection and label parsing. Decisions a caller relies on:

* Columns: `text_col`/`label_col` None → the first common name present (case-insensitive, see
  TEXT_NAMES / LABEL_NAMES); otherwise a one-line `ValidationError` lists the columns found.
* Multi-label: a row's label is a list when it is a list in JSONL/Parquet, or a string that is a
  JSON/Python list (`["a", "b"]`, `['a', 'b']`) or contains `|` (`a|b`). With `multi_label=None`
  the dataset is multi-label when any row is; then every row holds a sorted, de-duplicated list
  and single labels become one-element lists. An explicit empty list `[]` is a row with no
  labels and is kept. `multi_label=False` never splits strings (for labels containing `|`).
* Numbers and booleans as labels become strings ("1", "True"); 1.0 becomes "1".
* Rows whose text is empty, or whose label is missing/empty, are dropped and counted in
  `Dataset.warnings`; when no row is left it is an error. A label spelt "nan", "NaN", "null" or
  "NULL" (how spreadsheets and pandas write a missing value) counts as missing; "None" does not,
  as it is a real class in many intent datasets.
* `limit` reads at most that many rows of the file (before dropping empty ones).
"""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path
from typing import Any

from modelshop.errors import ValidationError, did_you_mean

from .dataset import Dataset
from .readers import Table, read_table

TEXT_NAMES = ("text", "sentence", "content", "review", "message", "question", "query",
              "utterance", "document", "body", "comment", "input", "文本", "内容", "句子",
              "评论", "问题", "正文")
LABEL_NAMES = ("label", "labels", "category", "class", "intent", "target", "tag", "tags",
               "topic", "sentiment", "y", "标签", "类别", "分类", "意图", "类型")


def load_dataset(path: str | Path, text_col: str | None = None, label_col: str | None = None, *,
                 require_labels: bool = True, limit: int | None = None,
                 multi_label: bool | None = None) -> Dataset:
    """Load CSV/TSV, JSONL, JSON, Parquet or a FOLDER/LABEL/*.txt tree; see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path} not found; check the path (relative paths start at {Path.cwd()})")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValidationError(f"limit must be a positive whole number of rows, got {limit!r}")
    table = read_table(path, limit)
    name = path.name
    text_col = _pick_column(table, text_col, TEXT_NAMES, "text", name, required=True)
    label_col = _pick_column(table, label_col, LABEL_NAMES, "label", name, required=require_labels)
    if label_col is not None and label_col == text_col:
        raise ValidationError(f"text and label column are both {text_col!r}; pass different columns")
    texts = [_text(v, i, text_col, name) for i, v in enumerate(table.load(text_col), start=1)]
    rows = list(range(1, len(texts) + 1))  # file row numbers, for messages
    warnings = list(table.notes)
    labels: list[Any] = []
    is_multi = False
    if label_col is not None:
        labels, is_multi = _parse_labels(table.load(label_col), multi_label, name)
        keep = [i for i, lab in enumerate(labels) if lab is not None]
        if not keep:
            if require_labels:
                raise ValidationError(f"{name}: every row has an empty {label_col!r} column; "
                                      "fill in the labels or pick another label column")
            labels = []
        elif len(keep) < len(labels):
            warnings.append(_dropped(rows, keep, f"an empty {label_col!r} label", "fill them in"))
            texts, labels, rows = ([seq[i] for i in keep] for seq in (texts, labels, rows))
    keep = [i for i, text in enumerate(texts) if text.strip()]
    if not keep:
        raise ValidationError(f"{name}: every row has an empty {text_col!r} text; pick the column "
                              "that holds the text with text_col (CLI: --text-col)")
    if len(keep) < len(texts):
        warnings.append(_dropped(rows, keep, f"an empty {text_col!r} text", "remove them"))
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep] if labels else []
    return Dataset(texts=texts, labels=labels, multi_label=is_multi, source=str(path),
                   text_col=text_col, label_col=label_col or "label", warnings=warnings)


def _pick_column(table: Table, wanted: str | None, names: tuple[str, ...], role: str, file: str,
                 *, required: bool) -> str | None:
    found = ", ".join(table.columns)
    if wanted is not None:
        if wanted in table.columns:
            return wanted
        hint = did_you_mean(wanted, table.columns)
        raise ValidationError(f"{file} has no column {wanted!r}{hint}; columns found: {found}")
    lowered = {c.strip().lower(): c for c in table.columns}
    for candidate in names:
        if candidate in lowered:
            return lowered[candidate]
    if not required:
        return None
    hint = did_you_mean(role, table.columns)
    if len(table.columns) == 1 and any(sep in table.columns[0] for sep in ";\t|"):
        hint = " (the header looks like it uses another separator than a comma)"
    raise ValidationError(f"{file}: cannot tell which column holds the {role}{hint}; columns found: "
                          f"{found}; pass {role}_col (CLI: --{role}-col)")


_NULL_LABELS = frozenset({"nan", "NaN", "null", "NULL"})


def _missing(value: Any) -> bool:
    return (value is None or (isinstance(value, float) and math.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def _missing_label(value: Any) -> bool:
    return _missing(value) or (isinstance(value, str) and value.strip() in _NULL_LABELS)


def _text(value: Any, row: int, col: str, file: str) -> str:
    if _missing(value):
        return ""
    if isinstance(value, (list, dict, tuple)):
        raise ValidationError(f"{file} row {row}: column {col!r} holds a {type(value).__name__}, "
                              "not text; pick the text column with text_col (CLI: --text-col)")
    return value if isinstance(value, str) else _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _listed(value: Any, row: int, file: str) -> list[Any] | None:
    """The labels of a list-valued cell, or None when the cell holds one plain label."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(text)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, list):
                return parsed
        raise ValidationError(f"{file} row {row}: label {text[:60]!r} looks like a list but does not "
                              'parse; write it as ["a", "b"] or a|b')
    if "|" in text:
        return text.split("|")
    return None


def _parse_labels(raw: list[Any], multi_label: bool | None, file: str) -> tuple[list[Any], bool]:
    """Per row: a label string, a sorted list of labels, or None for a missing label."""
    listed = [None if _missing_label(v) or (multi_label is False and isinstance(v, str))
              else _listed(v, i, file) for i, v in enumerate(raw, start=1)]
    if multi_label is None:
        multi_label = any(item is not None for item in listed)
    out: list[Any] = []
    for row, (value, items) in enumerate(zip(raw, listed), start=1):
        if _missing_label(value):
            out.append(None)
            continue
        if items is not None and any(isinstance(x, (list, dict, tuple)) for x in items):
            raise ValidationError(f"{file} row {row}: labels must be strings, got a nested "
                                  f"{type(value).__name__}; write them as [\"a\", \"b\"]")
        if isinstance(value, dict):
            raise ValidationError(f"{file} row {row}: the label is an object; write a string or a list")
        if multi_label:
            parts = items if items is not None else [value]
            out.append(sorted({_scalar(x) for x in parts if not _missing_label(x)}))
        elif isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise ValidationError(f"{file} row {row} has {len(value)} labels but multi_label is "
                                      "off; pass multi_label=True or give one label per row")
            out.append(None if _missing_label(value[0]) else _scalar(value[0]))
        else:
            out.append(_scalar(value))
    return out, multi_label


def _dropped(rows: list[int], keep: list[int], what: str, fix: str) -> str:
    kept = set(keep)
    gone = [row for i, row in enumerate(rows) if i not in kept]
    shown = ", ".join(map(str, gone[:5])) + (", ..." if len(gone) > 5 else "")
    return f"dropped {len(gone)} row(s) with {what} (rows {shown}); {fix}"
