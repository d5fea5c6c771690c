"""`modelshop demo`: the main job on embedded defaults."""

from __future__ import annotations

import typer

from modelshop.cli.output import emit_json


def demo(epochs: int = typer.Option(8, help="fine-tuning epochs"),
         base_model: str = typer.Option("minilm", help="minilm, tfidf, a folder or a hub id"),
         serve: bool = typer.Option(True, help="end by serving the model (Ctrl-C stops it)"),
         new_key: bool = typer.Option(False, "--new-key", help="rotate the demo customer's key and show the new "
                                                               "one (a later run keeps the key the first showed)"),
         llm: str = typer.Option("smollm2", help="the generative model to serve beside the classifier: smollm2, "
                                                  "a .gguf file, a folder or a cached hub id; none to skip it"),
         json_out: bool = typer.Option(False, "--json",
                                       help="print what the demo made as JSON (implies --no-serve)")) -> None:
    """Bundled data → profile → train minilm beside tfidf → register → plans, customer, key, channels, bot →
    smollm2 → serve."""
    from modelshop.demo import run_demo

    result = run_demo(epochs=epochs, base_model=base_model, serve=serve and not json_out, new_key=new_key,
                      llm=None if llm.lower() == "none" else llm, say=(lambda _m: None) if json_out else typer.echo)
    if json_out:
        emit_json({k: result[k] for k in ("report", "train", "plans", "customer_id", "key", "key_id", "key_prefix",
                                          "replaced_key_id", "channels", "bot", "llm")})


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
