"""`modelshop serve`: the HTTP server over the production version of every registered model."""

from __future__ import annotations

import typer


def serve(host: str = typer.Option(None, help="address to listen on [default: MODELSHOP_HOST or 127.0.0.1]"),
          port: int = typer.Option(None, help="port [default: MODELSHOP_PORT or 8000]")) -> None:
    """Serve /predict, /models/NAME, /v1/embeddings, /explain, /health, /info and /metrics."""
    from modelshop.platform import run

    run(host=host, port=port, say=typer.echo)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
