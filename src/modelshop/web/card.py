"""What the public may see of a model's card and figures: no file paths of the server.

Training writes the paths it used into `card.md`, `metrics.json` and `profile.json` (the data
files, a local base-model or checkpoint folder); the operator's console may show them, the
storefront must not: they map the server's disks and user names for anyone who looks. Each
absolute path (POSIX, `~/…`, `file://…`, Windows `C:\\…` or `\\\\host\\share\\…`) becomes its
last part, which still says what was used (`train.jsonl`, `bert-base-chinese`); URLs and hub ids
(`org/model`) are not paths and stay.

    strip_paths(text)   one string (the card's Markdown, a base model)
    public(value)       the same through a JSON value (metrics.json, profile.json, optimize.json)
    public_model(row)   a registry row as the storefront templates read it, base model stripped
"""

from __future__ import annotations

import re

_STOP = r"\s`'\"<>|()\[\]{},;*"
# a path inside backticks may hold spaces: the card writes paths as `…`
_QUOTED = re.compile(r"`((?:~|[A-Za-z]:)?[/\\][^`\n]*)`")
_PATH = re.compile(
    rf"file://[^{_STOP}]+"                                   # file:///srv/data/train.jsonl
    rf"|\\\\[^{_STOP}]+"                                     # \\host\share\train.jsonl
    rf"|(?<![\w.:/\\~-])[A-Za-z]:[\\/][^{_STOP}]*"           # C:\data\train.jsonl
    rf"|(?<![\w.:/\\~-])~?/[^{_STOP}/][^{_STOP}]*")         # /srv/data/train.jsonl, ~/data


def _last_part(path: str) -> str:
    path = path.removeprefix("file://").rstrip("/\\")
    return re.split(r"[/\\]", path)[-1]


def strip_paths(text: str) -> str:
    """`text` with every absolute file path replaced by its last part."""
    if not isinstance(text, str) or not any(c in text for c in "/\\"):
        return text
    text = _QUOTED.sub(lambda m: f"`{_last_part_of_quoted(m.group(1))}`", text)
    return _PATH.sub(lambda m: _last_part(m.group(0)), text)


def _last_part_of_quoted(inner: str) -> str:
    # `/data/train.jsonl (20% held out, seed 42)`: the path ends where the note begins
    path, sep, note = inner.partition(" (")
    return _last_part(path) + (sep + note if sep else "")


def public(value: object) -> object:
    """A JSON value (dicts, lists, strings, numbers) with `strip_paths` applied to every string, keys too."""
    if isinstance(value, str):
        return strip_paths(value)
    if isinstance(value, dict):
        return {strip_paths(k) if isinstance(k, str) else k: public(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public(v) for v in value]
    return value


def public_model(row) -> dict:
    """The fields of a registry row the storefront shows, its base model without a server path."""
    return {"name": row.name, "version": row.version, "ref": row.ref, "labels": list(row.labels),
            "family": row.family, "format": row.format, "multi_label": row.multi_label,
            "base_model": strip_paths(row.base_model)}
