"""`modelshop optimize`: int8 and ONNX forms of a registered model, measured and registered."""

from __future__ import annotations

from pathlib import Path

import typer

from modelshop.cli.output import emit_json


def optimize(model: str = typer.Option(..., "--model", help="NAME or NAME:VERSION of an fp32 transformer"),
             data: Path = typer.Option(None, "--data", help="labelled eval file to measure speed and accuracy on "
                                                            "(required)"),
             int8: bool = typer.Option(False, "--int8", help="dynamic int8 quantisation (PyTorch)"),
             onnx: bool = typer.Option(False, "--onnx", help="ONNX Runtime export (fp32)"),
             onnx_int8: bool = typer.Option(False, "--onnx-int8", help="ONNX Runtime export, int8 weights"),
             text_col: str = typer.Option(None, help="text column (auto-detected)"),
             label_col: str = typer.Option(None, help="label column (auto-detected)"),
             limit: int = typer.Option(None, help="measure on the first N rows only"),
             json_out: bool = typer.Option(False, "--json", help="print the figures as JSON")) -> None:
    """Register compressed versions (staging) with their speed and accuracy beside the original's."""
    from modelshop.optimize import optimize as run

    variants = [v for v, on in (("int8", int8), ("onnx", onnx), ("onnx-int8", onnx_int8)) if on]
    result = run(model, data=data, variants=variants, text_col=text_col, label_col=label_col, limit=limit,
                 say=(lambda _m: None) if json_out else typer.echo)
    if json_out:
        emit_json(result)


def register(app: typer.Typer) -> None:
    app.command("optimize")(optimize)
