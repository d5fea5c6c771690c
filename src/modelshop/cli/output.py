"""Printing results: JSON for machines (`--json`), short lines for people."""

from __future__ import annotations

import json

import typer


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))
