"""Reading one file format into a `Table` of named columns; no column mapping, no cleaning.

Formats: CSV/TSV (pandas, every cell read as a string), JSONL/NDJSON (one object per line),
JSON (an array of objects, or JSONL), Parquet (pyarrow, only the needed columns are read) and a
folder-per-label tree (`FOLDER/LABEL/*.txt`, one text per file → columns `text`, `label`).
pandas and pyarrow are imported inside the readers so `import modelshop.data` stays light.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelshop.errors import ValidationError

from .encoding import read_text

SUPPORTED = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")


@dataclass
class Table:
    columns: list[str]
    load: Callable[[str], list[Any]]  # column name → its values, one per row
    notes: list[str] = field(default_factory=list)


def read_table(path: Path, limit: int | None = None) -> Table:
    """Read `path` (a file of a supported format or a label-folder tree), at most `limit` rows."""
    if path.is_dir():
        return _read_folder(path, limit)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise ValidationError(
            f"{path.name}: unsupported file type {suffix or '(no extension)'!r}; use one of "
            f"{', '.join(SUPPORTED)} or a folder laid out as FOLDER/LABEL/*.txt"
        )
    if suffix == ".parquet":
        return _read_parquet(path, limit)
    text, note = read_text(path)
    notes = [note] if note else []
    if not text.strip():
        raise ValidationError(f"{path.name} is empty; it needs a header or keys and at least one row")
    if suffix in (".csv", ".tsv"):
        table = _read_csv(text, path.name, "\t" if suffix == ".tsv" else ",", limit)
    elif suffix == ".json" and text.lstrip().startswith("["):
        table = _records_table(_parse_json_array(text, path.name)[:limit], path.name)
    else:
        table = _records_table(_parse_jsonl(text, path.name, limit), path.name)
    table.notes[:0] = notes
    return table


def _read_csv(text: str, name: str, sep: str, limit: int | None) -> Table:
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            na_filter=False, nrows=limit)
    except pd.errors.EmptyDataError:
        raise ValidationError(f"{name} has no header row; the first line must name the columns") from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise ValidationError(
            f"{name} is not valid CSV ({detail}); quote fields that contain the separator or newlines"
        ) from None
    columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise ValidationError(f"{name} has a header ({', '.join(columns)}) but no rows; add data rows")
    return Table(columns, lambda col: frame[col].tolist())


def _parse_jsonl(text: str, name: str, limit: int | None) -> list[dict]:
    records: list[dict] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if limit is not None and len(records) >= limit:
            break
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"{name} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno}); "
                "each line must be one JSON object"
            ) from None
        if not isinstance(record, dict):
            raise ValidationError(
                f"{name} line {lineno} is a JSON {type(record).__name__}, not an object; "
                'write each row as {"text": ..., "label": ...}'
            )
        records.append(record)
    return records


def _parse_json_array(text: str, name: str) -> list[dict]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{name} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "fix it or write one object per line as JSONL"
        ) from None
    for i, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ValidationError(f"{name}: item {i} of the array is not an object; "
                                  'write each row as {"text": ..., "label": ...}')
    return records


def _records_table(records: list[dict], name: str) -> Table:
    if not records:
        raise ValidationError(f"{name} has no rows; add at least one JSON object")
    columns = list(dict.fromkeys(key for record in records for key in record))
    return Table([str(c) for c in columns], lambda col: [r.get(col) for r in records])


def _read_parquet(path: Path, limit: int | None) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"{path.name} is not a readable Parquet file ({exc}); "
                              "re-export it, e.g. with pandas.DataFrame.to_parquet") from None
    meta_rows = pq.ParquetFile(path).metadata.num_rows
    if meta_rows == 0:
        raise ValidationError(f"{path.name} has columns ({', '.join(schema.names)}) but no rows; add rows")

    def load(col: str) -> list[Any]:
        values = pq.read_table(path, columns=[col]).column(col)
        if limit is not None:
            values = values.slice(0, limit)
        return values.to_pylist()

    return Table(list(schema.names), load)


def _read_folder(root: Path, limit: int | None) -> Table:
    texts: list[str] = []
    labels: list[str] = []
    decoded: list[str] = []
    stray = 0
    for entry in sorted(root.iterdir()):
        if entry.name.startswith((".", "__")):  # .git, .DS_Store, __MACOSX from zip files
            continue
        if not entry.is_dir():
            stray += 1
            continue
        for file in sorted(entry.glob("*.txt")):
            if limit is not None and len(texts) >= limit:
                break
            text, note = read_text(file)
            if note:
                decoded.append(f"{entry.name}/{note}")
            texts.append(text)
            labels.append(entry.name)
    if not texts:
        raise ValidationError(
            f"folder {root.name} has no LABEL/*.txt files; lay it out as "
            f"{root.name}/<label>/<name>.txt with one text per file"
        )
    notes = []
    if decoded:
        notes.append(f"{len(decoded)} file(s) were not plain UTF-8, e.g. {decoded[0]}")
    if stray:
        notes.append(f"ignored {stray} file(s) directly in {root.name}; only {root.name}/<label>/*.txt are read")
    data = {"text": texts, "label": labels}
    return Table(["text", "label"], lambda col: data[col], notes)
