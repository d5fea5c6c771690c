"""`modelshop data ...`: profile and clean datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from modelshop.cli.output import emit_json

app = typer.Typer(no_args_is_help=True)


@app.command()
def profile(path: Path, text_col: str = typer.Option(None, help="text column (auto-detected)"),
            label_col: str = typer.Option(None, help="label column (auto-detected)"),
            eval: Path = typer.Option(None, "--eval", help="an eval file to check for train/eval leakage"),
            base_model: str = typer.Option("minilm", "--base-model", "--tokenizer",
                                           help="minilm | tfidf | local folder | hub id: its tokenizer counts tokens "
                                                "and is checked per language (tfidf or 'none': words, no check)"),
            report: Path = typer.Option(None, help="folder for the HTML report with charts"),
            json_out: bool = typer.Option(False, "--json", help="print the profile as JSON")) -> None:
    """Rows, labels and imbalance, token lengths, duplicates, conflicts, leakage, PII, languages."""
    from modelshop.data import profile_file
    from modelshop.train.base_models import load_tokenizer

    words = base_model in ("none", "tfidf")
    result = profile_file(path, text_col=text_col, label_col=label_col, eval_path=eval,
                          tokenizer=None if words else load_tokenizer(base_model), report_dir=report,
                          base_model=None if words else base_model)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"{result['rows']} rows, {result['num_labels']} labels, imbalance {result['imbalance_ratio']}:1")
    for name, count in result["labels"].items():
        typer.echo(f"  {name}: {count}")
    length = result["length"]
    typer.echo(f"tokens: p50 {length['p50']}, p95 {length['p95']}, max {length['max']}; "
               f"recommended max_length {result['recommended_max_length']}")
    langs = result["languages"]
    typer.echo("languages: " + ", ".join(f"{code} {n} ({langs['shares'][code]:.1%})"
                                         for code, n in langs["counts"].items()))
    coverage = result["tokenizer_coverage"]
    if coverage:
        typer.echo(f"tokenizer coverage ({coverage['base_model']}): " + "; ".join(
            f"{code} {c['unk_rate']:.1%} [UNK], {c['pieces_per_char']:.2f} pieces/char"
            for code, c in coverage["per_language"].items()))
    for w in result.get("warnings", []):
        typer.echo(f"warning: {w}")
    if result.get("report"):
        typer.echo(f"report: {result['report']}")


@app.command()
def clean(path: Path, out: Path = typer.Option(..., help="where to write the cleaned JSONL"),
          text_col: str = typer.Option(None), label_col: str = typer.Option(None),
          redact: bool = typer.Option(True, help="redact e-mails, phones, ID-card and card numbers"),
          json_out: bool = typer.Option(False, "--json")) -> None:
    """Normalise, drop empties and duplicates, redact PII; writes JSONL (text, label)."""
    from modelshop.data import clean_file

    result = clean_file(path, out, text_col=text_col, label_col=label_col, redact=redact)
    if json_out:
        emit_json(result)
    else:
        typer.echo(", ".join(f"{k}: {v}" for k, v in result.items()))
