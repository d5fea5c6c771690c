"""`modelshop demo`: the main job on embedded defaults."""

from __future__ import annotations

import typer

from modelshop.cli.output import emit_json


def demo(epochs: int = typer.Option(8, help="fine-tuning epochs"),
         base_model: str = typer.Option("minilm", help="minilm, tfidf, a folder or a hub id"),
         json_out: bool = typer.Option(False, "--json", help="print what the demo made as JSON")) -> None:
    """Bundled data → profile → train minilm → evaluate beside tfidf → register."""
    from modelshop.demo import run_demo

    result = run_demo(epochs=epochs, base_model=base_model, say=(lambda _m: None) if json_out else typer.echo)
    if json_out:
        emit_json({"report": result["report"], "train": result["train"]})


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
