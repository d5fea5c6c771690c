"""`modelshop train | eval | predict | score`: training and using registered versions."""

from __future__ import annotations

from pathlib import Path

import typer

from modelshop.cli.output import emit_json


def train(data: Path = typer.Option(..., "--data", help="training file (CSV, JSONL, Parquet) or folder-per-label"),
          eval: Path = typer.Option(None, "--eval", help="evaluation file; default: 20% of --data held out"),
          name: str = typer.Option(..., "--name", help="registered model name"),
          text_col: str = typer.Option(None, help="text column (auto-detected)"),
          label_col: str = typer.Option(None, help="label column (auto-detected)"),
          base_model: str = typer.Option(None, help="minilm | tfidf | local folder | hub id [default: minilm]"),
          epochs: int = typer.Option(None, help="passes over the data [default: 3]"),
          max_length: int = typer.Option(None, help="tokens per text [default: recommended from the data]"),
          batch_size: int = typer.Option(None, help="examples per batch [default: 32]"),
          learning_rate: float = typer.Option(None, help="AdamW learning rate [default: 5e-5]"),
          seed: int = typer.Option(None, help="random seed [default: 42]"),
          limit: int = typer.Option(None, help="use only the first N training rows"),
          search: int = typer.Option(None, "--search", help="Optuna trials of hyperparameter search"),
          config: Path = typer.Option(None, "--config", help="YAML file of training options"),
          checkpoint_dir: Path = typer.Option(None, help="keep per-epoch checkpoints here"),
          resume: bool = typer.Option(False, help="resume from the last checkpoint in --checkpoint-dir"),
          deploy: str = typer.Option(None, help="what the version serves: recommended (chosen on the validation "
                                     "split) | transformer | tfidf | ensemble [default: recommended]"),
          json_out: bool = typer.Option(False, "--json", help="print the figures as JSON")) -> None:
    """Fine-tune (or fit tfidf) beside the tfidf model, choose on validation figures what to serve (one of them
    or both combined), evaluate, register that as a version."""
    from modelshop.train import TrainConfig, run_training

    options = {"base_model": base_model, "epochs": epochs, "max_length": max_length, "batch_size": batch_size,
               "learning_rate": learning_rate, "seed": seed, "limit": limit, "search_trials": search,
               "checkpoint_dir": checkpoint_dir, "resume": resume or None, "deploy": deploy}
    cfg = (TrainConfig.from_yaml(config, **options) if config
           else TrainConfig.from_dict({k: v for k, v in options.items() if v is not None}))
    result = run_training(data, eval, name=name, cfg=cfg, text_col=text_col, label_col=label_col)
    if json_out:
        emit_json(result)
        return
    typer.echo(f"registered {result['name']}:{result['version']} ({result['stage']}), serving: {result['family']}")
    typer.echo(f"accuracy {result['accuracy']:.4f}  macro-F1 {result['macro_f1']:.4f}  ECE {result['ece']:.4f}")
    _echo_per_language(result)
    for other, m in (result.get("candidates") or {}).items():
        if other != result["family"]:
            typer.echo(f"{'combination' if other == 'ensemble' else other}: accuracy {m['accuracy']:.4f}  "
                       f"macro-F1 {m['macro_f1']:.4f}")
            _echo_per_language(m)
    typer.echo(f"recommended: {result['recommended']}: {result['reason']}")
    typer.echo(f"model card: {result['card']}")


def eval_(model: str = typer.Option(..., "--model", help="NAME or NAME:VERSION"),
          data: Path = typer.Option(..., "--data", help="labelled file"),
          text_col: str = typer.Option(None), label_col: str = typer.Option(None),
          json_out: bool = typer.Option(False, "--json")) -> None:
    """Evaluate a registered version on a labelled file."""
    from modelshop.train import evaluate

    result = evaluate(model, data, text_col=text_col, label_col=label_col)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"{result['name']}:{result['version']} on {result['n']} rows: accuracy {result['accuracy']:.4f}"
                   f"  macro-F1 {result['macro_f1']:.4f}")
        _echo_per_language(result)


def _echo_per_language(result: dict) -> None:
    for code, m in (result.get("per_language") or {}).items():
        typer.echo(f"  {code}: {m['n']} rows, accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}")


def predict(texts: list[str] = typer.Argument(..., help="texts to classify"),
            model: str = typer.Option(..., "--model", help="NAME or NAME:VERSION"),
            top_k: int = typer.Option(None, help="scores to show per text"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Classify texts with a registered version."""
    from modelshop.train.scoring import predict as run

    results = run(model, texts, top_k=top_k)
    if json_out:
        emit_json(results)
        return
    for r in results:
        typer.echo(f"{r['label']}\t{r['scores'][0]['score']:.4f}\t{r['text']}")


def score(model: str = typer.Option(..., "--model"), data: Path = typer.Option(..., "--data"),
          out: Path = typer.Option(..., "--out", help="JSONL output: each row plus label and score"),
          text_col: str = typer.Option(None), json_out: bool = typer.Option(False, "--json")) -> None:
    """Score a large CSV/JSONL file in a stream, with a progress bar."""
    from modelshop.train import score_file

    result = score_file(model, data, out, text_col=text_col)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"scored {result['rows']} rows with {result['model']} → {result['output']}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(eval_)
    app.command("predict")(predict)
    app.command("score")(score)
