"""`modelshop llm add | list`: generative models (local causal LMs) in the registry."""

from __future__ import annotations

import typer

from modelshop.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def add(name: str = typer.Option(..., "--name", help="registered model name"),
        base_model: str = typer.Option(..., "--base-model", help="smollm2 | a .gguf file | a Hugging Face folder "
                                                                 "| a hub id in the local cache"),
        json_out: bool = typer.Option(False, "--json", help="print the version as JSON")) -> None:
    """Register a local generative model (converted once to fp32 safetensors); the first version of a name
    goes to production."""
    from modelshop.llm.registry import add_local
    from modelshop.settings import get_settings

    say = (lambda m: typer.echo(m, err=True)) if get_settings().progress else None
    result = add_local(name, base_model, say=say)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"registered {result['name']}:{result['version']} ({result['stage']}): {result['architecture']}, "
               f"{result['parameters']:,} parameters, context {result['context_length']} tokens"
               + ("" if result["has_chat_template"] else ", no chat template (completions only)"))
    typer.echo(f"files: {result['path']}")


@app.command("list")
def list_(json_out: bool = typer.Option(False, "--json", help="print the versions as JSON")) -> None:
    """Every generative version with its stage, architecture, context length and size."""
    from modelshop.llm.registry import list_generative

    rows = list_generative()
    if json_out:
        emit_json(rows)
        return
    if not rows:
        typer.echo("no generative model registered yet; run `modelshop llm add --name NAME --base-model smollm2`")
    for r in rows:
        params = f"{r['parameters']:,}" if r["parameters"] else "?"
        typer.echo(f"{r['name']}:{r['version']}\t{r['stage']}\t{r['architecture']}\tcontext {r['context_length']}"
                   f"\t{params} parameters\t{r['base_model']}")
