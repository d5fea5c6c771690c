"""`modelshop models list | show | promote`."""

from __future__ import annotations

import typer

from modelshop.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


def _summary(row) -> dict:
    from modelshop.llm.registry import kind

    return {"name": row.name, "version": row.version, "stage": row.stage, "kind": kind(row), "family": row.family,
            "format": row.format, "base_model": row.base_model, "labels": row.labels,
            "macro_f1": row.metrics.get("macro_f1"), "accuracy": row.metrics.get("accuracy"),
            "recommended": row.metrics.get("recommended"), "data_sha256": row.data_sha256,
            "parent_id": row.parent_id, "created_at": row.created_at.isoformat()}


@app.command("list")
def list_(name: str = typer.Argument(None), json_out: bool = typer.Option(False, "--json")) -> None:
    """Every registered version, with stage and headline figures."""
    from modelshop.registry import Registry

    rows = [_summary(r) for r in Registry.from_settings().list(name)]
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no model registered yet; run `modelshop train` or `modelshop demo`")
    for r in rows:
        figure = f"macro-F1 {r['macro_f1']}" if r["kind"] == "classifier" else f"base {r['base_model']}"
        typer.echo(f"{r['name']}:{r['version']}\t{r['stage']}\t{r['kind']}\t{r['family']}/{r['format']}\t{figure}")


@app.command()
def show(ref: str, json_out: bool = typer.Option(False, "--json")) -> None:
    """One version: figures, lineage, where its files and card are."""
    from modelshop.registry import Registry

    reg = Registry.from_settings()
    row = reg.get(ref)
    info = {**_summary(row), "metrics": row.metrics, "path": str(reg.path(row)),
            "card": str(reg.path(row) / "card.md")}
    if json_out:
        emit_json(info)
        return
    for k, v in info.items():
        if k != "metrics":
            typer.echo(f"{k}: {v}")


@app.command()
def promote(ref: str, stage: str = typer.Option("production", help="staging | production | archived"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Move NAME:VERSION to a stage; promoting to production archives the previous one."""
    from modelshop.registry import Registry

    row = Registry.from_settings().promote(ref, stage)
    if json_out:
        emit_json(_summary(row))
    else:
        typer.echo(f"{row.ref} is now {row.stage}")
