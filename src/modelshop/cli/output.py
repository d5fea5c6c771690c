"""Printing results: JSON for machines (`--json`), short lines for people; old option spellings."""

from __future__ import annotations

import json

import typer


def emit_json(obj) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


def alias(value, old_value, name: str, old_name: str):
    """An option that also answers to an older, hidden spelling (kept so existing scripts keep working)."""
    from modelshop.errors import ValidationError

    if old_value is None:
        return value
    if value is not None and value != old_value:
        raise ValidationError(f"{name} and {old_name} are the same option; give it once ({old_name} is its old name)")
    return old_value
