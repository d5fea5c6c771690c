"""Reading recommendation data: items with text, and user–item interactions.

Files: CSV/TSV/JSONL/JSON/Parquet (`modelshop.data.readers`) and RecBole atomic files (`.item`,
`.inter`, `.user`: tab-separated, typed headers such as `item_id:token`; the type is dropped).
Columns are detected by common names or given; a missing one is a one-line error naming the
columns found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelshop.errors import ValidationError, did_you_mean

ITEM_ID = ("item_id", "item", "id", "movie_id", "product_id", "sku")
USER_ID = ("user_id", "user", "customer_id", "visitor_id")
TIME = ("timestamp", "time", "ts", "date", "created_at")
TEXT_PARTS = (("title", "movie_title", "name", "product_name"),
              ("release_year", "year"),
              ("class", "genres", "genre", "tags", "category", "categories"),
              ("description", "desc", "summary", "overview", "text"))
ATOMIC = (".inter", ".item", ".user")


@dataclass
class Items:
    ids: list[str]
    texts: list[str]
    titles: list[str]


@dataclass
class Interactions:
    users: np.ndarray   # str user ids, in file order
    items: np.ndarray   # str item ids
    times: np.ndarray   # float; file order when the file has no time column


def _table(path: Path) -> tuple[list[str], callable]:
    if not path.is_file():
        raise ValidationError(f"{path} not found; check the path")
    if path.suffix.lower() in ATOMIC:
        import pandas as pd

        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
        frame.columns = [c.split(":", 1)[0] for c in frame.columns]
        if frame.empty:
            raise ValidationError(f"{path.name} has a header but no rows")
        return list(frame.columns), lambda col: frame[col].tolist()
    from modelshop.data.readers import read_table

    table = read_table(path)
    names = {c.split(":", 1)[0]: c for c in table.columns}
    return list(names), lambda col: table.load(names[col])


def _pick(columns: list[str], wanted: str | None, names: tuple[str, ...], role: str, file: str,
          flag: str, required: bool = True) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise ValidationError(f"{file} has no column {wanted!r}{did_you_mean(wanted, columns)}; "
                              f"columns found: {', '.join(columns)}")
    lowered = {c.lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    if required:
        raise ValidationError(f"{file}: cannot tell which column holds the {role}; columns found: "
                              f"{', '.join(columns)}; pass {flag}")
    return None


def _str(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def read_items(path: str | Path, *, id_col: str | None = None, text_cols: list[str] | None = None) -> Items:
    """Items and the text that describes each (title, year, genres/tags, description)."""
    path = Path(path)
    columns, load = _table(path)
    id_col = _pick(columns, id_col, ITEM_ID, "item ids", path.name, "--item-col")
    if text_cols:
        for col in text_cols:
            _pick(columns, col, (), "text", path.name, "--text-cols")
        parts = list(text_cols)
    else:
        parts = [c for names in TEXT_PARTS if (c := _pick(columns, None, names, "", "", "", False))]
        parts = [c for c in parts if c != id_col]
    if not parts:
        raise ValidationError(f"{path.name}: no text column (title, description, tags ...) among "
                              f"{', '.join(columns)}; pass --text-cols")
    ids = [_str(v) for v in load(id_col)]
    values = [[_str(v) for v in load(c)] for c in parts]
    texts = [". ".join(v for v in row if v) for row in zip(*values)]
    seen = set()
    for n, i in enumerate(ids, start=1):
        if not i:
            raise ValidationError(f"{path.name} row {n}: empty {id_col!r}; every item needs an id")
        if i in seen:
            raise ValidationError(f"{path.name} row {n}: item {i!r} appears twice; ids must be unique")
        seen.add(i)
    return Items(ids, texts, values[0])


def read_interactions(path: str | Path, *, user_col: str | None = None, item_col: str | None = None,
                      time_col: str | None = None) -> Interactions:
    """Who interacted with what (and when: sorted by time when the file has a time column)."""
    path = Path(path)
    columns, load = _table(path)
    user_col = _pick(columns, user_col, USER_ID, "user ids", path.name, "--user-col")
    item_col = _pick(columns, item_col, ITEM_ID, "item ids", path.name, "--item-col")
    time_col = _pick(columns, time_col, TIME, "times", path.name, "--time-col", required=False)
    users = np.array([_str(v) for v in load(user_col)], dtype=object)
    items = np.array([_str(v) for v in load(item_col)], dtype=object)
    if time_col:
        import pandas as pd

        raw = pd.Series(load(time_col))
        times = pd.to_numeric(raw, errors="coerce")
        if times.isna().any():  # dates rather than numbers
            times = pd.to_datetime(raw, errors="coerce", utc=True).astype("int64") / 1e9
        if pd.isna(times).any():
            raise ValidationError(f"{path.name}: column {time_col!r} has values that are neither numbers nor "
                                  "dates; fix them or pass another --time-col")
        times = np.asarray(times, dtype=float)
    else:
        times = np.arange(len(users), dtype=float)
    keep = (users != "") & (items != "")
    if not keep.any():
        raise ValidationError(f"{path.name} has no row with both a user and an item")
    return Interactions(users[keep], items[keep], times[keep])
