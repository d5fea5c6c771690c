"""One training run end to end: load → check → split → tfidf baseline → fine-tune → evaluate →
write the model folder (weights, tokenizer, label map, metrics, card, charts) → register.

Under `accelerate launch` / `torchrun` every process runs this: all of them train together (the
loop shards the batches), but only the main process touches the registry, its database and its
folder. The others build into a scratch folder of their own, wait with the main one until all
are done, and leave; the main one registers the one version and returns the figures.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from modelshop.data import Dataset, detect_languages, load_dataset, profile_dataset, stratified_split
from modelshop.errors import ValidationError
from modelshop.inference import META_FILE
from modelshop.inference.base import probabilities
from modelshop.inference.tfidf import decision_logits
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings
from modelshop.train import plots
from modelshop.train.card import model_card, recommend
from modelshop.train.config import TrainConfig
from modelshop.train.metrics import compute_metrics, headline
from modelshop.train.processes import process_state
from modelshop.train.tfidf import fit_tfidf, save_tfidf

MIN_ROWS_FOR_VALIDATION = 20  # below this, carving a validation split leaves too little to learn from


@dataclass(frozen=True)
class RunData:
    """What one run learns from and is judged on, as `run_training` prepared it from the files."""

    fit: Dataset            # the rows the model learns from
    val: Dataset | None     # held out of the training rows for early stopping and search; None: too few rows
    evaluation: Dataset     # the rows of the reported and registered figures
    label_names: list[str]
    multi_label: bool
    max_length: int         # tokens per text: the config's, else the profile's recommendation
    balanced: bool          # class weights on (asked for, or "auto" on imbalanced data)
    eval_languages: list[str] | None = None  # the language of each evaluation text, for `per_language`


@dataclass(frozen=True)
class TrainResult:
    """What `_train_into` built into the version's folder, for the card, metrics.json and the registry."""

    metrics: dict                       # the model on the evaluation set (`compute_metrics`)
    baseline: dict | None               # the tfidf baseline's headline figures; None when the model is tfidf
    meta: dict                          # the folder's META_FILE: family, format, labels, max length, ...
    charts: dict[str, str]              # title → PNG file name in the folder
    fit: dict | None = None             # a transformer's fit: best epoch, speed, memory, class weights
    search: list[dict] | None = None    # the hyperparameter trials, when the config asked for a search


def check_datasets(train: Dataset, evaluation: Dataset | None) -> None:
    """Refuse data a classifier cannot learn from, with the fix."""
    names = train.label_names
    if len(names) < 2:
        raise ValidationError(
            f'{train.source or "training data"} has one class only ("{names[0] if names else ""}"); '
            "a classifier needs at least two labels")
    if evaluation is not None:
        unseen = sorted(set(evaluation.label_names) - set(names))
        if unseen:
            raise ValidationError(
                f"eval labels not in the training data: {', '.join(unseen[:10])}; "
                "add examples of them to the training file or drop them from the eval file")
        if evaluation.multi_label != train.multi_label:
            raise ValidationError("train and eval files disagree on multi-label: use one label format in both")


def _as_dataset(data, text_col, label_col) -> Dataset:
    return data if isinstance(data, Dataset) else load_dataset(data, text_col, label_col)


def run_training(data, eval_data=None, *, name: str, cfg: TrainConfig | None = None,
                 text_col: str | None = None, label_col: str | None = None,
                 settings: Settings | None = None, registry: Registry | None = None,
                 parent_id: int | None = None, progress: bool | None = None) -> dict:
    """Train, evaluate and register version N of `name`; returns the figures (the CLI's JSON)."""
    settings = settings or get_settings()
    cfg = cfg or TrainConfig()
    progress = settings.progress if progress is None else progress
    processes = process_state()
    main = processes.is_main_process
    # only the main process opens the database: N processes migrating one fresh file at once collide
    registry = (registry or Registry.from_settings(settings)) if main else None
    started = time.perf_counter()

    if not cfg.is_tfidf:  # a wrong base model should fail before any data work
        from modelshop.train.base_models import resolve_base_model

        resolve_base_model(cfg.base_model)
    train = _as_dataset(data, text_col, label_col)
    evaluation = _as_dataset(eval_data, train.text_col, train.label_col) if eval_data is not None else None
    if cfg.limit:
        train = train.subset(range(min(cfg.limit, len(train))))
    check_datasets(train, evaluation)
    train_sha256 = train.fingerprint()  # of the file as given, before any split: the lineage key
    if evaluation is None:
        if len(train) < 10:
            raise ValidationError(f"{len(train)} rows are too few to hold out an evaluation set; "
                                  "give --eval FILE or at least 10 labelled rows")
        train, evaluation = stratified_split(train, test_size=0.2, seed=cfg.seed)
        eval_source = f"{train.source} (20% held out, seed {cfg.seed})"
    else:
        eval_source = evaluation.source
    fit_set, val_set = (stratified_split(train, test_size=cfg.validation_fraction, seed=cfg.seed)
                        if cfg.validation_fraction > 0 and len(train) >= MIN_ROWS_FOR_VALIDATION
                        else (train, None))
    label_names = train.label_names
    multi = train.multi_label

    tokenizer = None
    if not cfg.is_tfidf:
        from modelshop.train.base_models import load_tokenizer

        tokenizer = load_tokenizer(cfg.base_model)
    model_max = min(getattr(tokenizer, "model_max_length", 512) or 512, 512) if tokenizer else 512
    profile = profile_dataset(train, tokenizer, evaluation, max_model_length=model_max, base_model=cfg.base_model)
    max_length = cfg.max_length or profile.get("recommended_max_length") or 128
    balanced = cfg.class_weights == "balanced" or (
        cfg.class_weights == "auto" and (profile.get("imbalance_ratio") or 1) >= 3)

    build = registry.incoming_dir() if main else Path(tempfile.mkdtemp(prefix="modelshop-train-"))
    try:
        run_data = RunData(fit=fit_set, val=val_set, evaluation=evaluation, label_names=label_names,
                           multi_label=multi, max_length=max_length, balanced=balanced,
                           eval_languages=detect_languages(evaluation.texts))
        result = _train_into(build, cfg, run_data, progress=progress, runs_dir=settings.runs_dir)
        meta = result.meta
        data_info = {"train": train.source, "eval": eval_source, "train_sha256": train_sha256,
                     "eval_sha256": evaluation.fingerprint(), "train_rows": len(fit_set),
                     "parent": parent_id}
        rec, reason = recommend(result.metrics if not cfg.is_tfidf else None, result.baseline, profile)
        figures = {**headline(result.metrics), "confusion_matrix": result.metrics["confusion_matrix"]}
        card = model_card(name=name, base_model=cfg.base_model, family=meta["family"], labels=label_names,
                          multi_label=multi, metrics=result.metrics, baseline=result.baseline,
                          recommended=rec, reason=reason, profile=profile, config=cfg.to_dict(),
                          data=data_info, fit=result.fit, charts=result.charts)
        (build / "card.md").write_text(card, encoding="utf-8")
        (build / "profile.json").write_text(json.dumps(profile, ensure_ascii=False, indent=1, default=str))
        stored = {**figures, "baseline": result.baseline, "recommended": rec, "reason": reason,
                  "fit": result.fit, "max_length": max_length, "config": cfg.to_dict(), "data": data_info,
                  "search": result.search}
        (build / "metrics.json").write_text(json.dumps(stored, ensure_ascii=False, indent=1))
        (build / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        processes.wait_for_everyone()  # every process has trained and written: one version, once
        if not main:
            _leave_quietly()
        row = registry.register(name, build, family=meta["family"], format=meta["format"],
                                base_model=cfg.base_model, labels=label_names, multi_label=multi,
                                metrics={**headline(result.metrics), "baseline_macro_f1":
                                         (result.baseline or {}).get("macro_f1"), "recommended": rec},
                                data_sha256=data_info["train_sha256"], eval_sha256=data_info["eval_sha256"],
                                parent_id=parent_id)
    finally:
        if build.exists():  # anything not moved into place is a half-written version: remove it
            shutil.rmtree(build, ignore_errors=True)
    folder = registry.path(row)
    return {"name": name, "version": row.version, "stage": row.stage, "family": meta["family"],
            **headline(result.metrics), "confusion_matrix": result.metrics["confusion_matrix"],
            "baseline": result.baseline, "recommended": rec, "reason": reason,
            "max_length": max_length, "path": str(folder), "card": str(folder / "card.md"),
            "charts": {k: str(folder / v) for k, v in result.charts.items()},
            "fit": result.fit, "search": result.search,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _leave_quietly() -> None:
    """End a non-main process of a launch: its part (training with the others) is done, and the
    main process alone registers and prints, so a launch prints one result and makes one version.
    `finally` blocks still run (its scratch folder is removed); the launcher sees exit status 0."""
    raise SystemExit(0)


def _train_into(build: Path, cfg: TrainConfig, data: RunData, *, progress: bool, runs_dir: Path) -> TrainResult:
    """Fit the tfidf baseline (and the model itself, unless it is the tfidf one), evaluate, and write the
    weights, charts and confusion matrix into `build`; a transformer's scratch checkpoints go under
    `runs_dir` unless the config names a checkpoint folder."""
    fit_set, val_set, evaluation = data.fit, data.val, data.evaluation
    label_names, multi, max_length, balanced = data.label_names, data.multi_label, data.max_length, data.balanced
    val_texts = val_set.texts if val_set is not None else None
    val_labels = val_set.labels if val_set is not None else None
    baseline, charts_made, fit_info, search = None, {}, None, None
    if cfg.tfidf_baseline or cfg.is_tfidf:
        pipe, tfidf_info = fit_tfidf(fit_set.texts, fit_set.labels, label_names, multi_label=multi,
                                     val_texts=val_texts, val_labels=val_labels, balanced=balanced,
                                     threshold=cfg.threshold)
        probs = probabilities(decision_logits(pipe, evaluation.texts, multi), multi)
        baseline_full = compute_metrics(evaluation.labels, probs, label_names, multi_label=multi,
                                        threshold=cfg.threshold, languages=data.eval_languages)
        baseline = {**headline(baseline_full), **tfidf_info}
    if cfg.is_tfidf:
        save_tfidf(pipe, build)
        metrics = baseline_full
        meta = {"family": "tfidf", "format": "sklearn", "labels": label_names, "multi_label": multi,
                "max_length": 1_000_000, "base_model": "tfidf", "threshold": cfg.threshold}
        baseline = None
    else:
        from modelshop.train.loop import encode, fit_transformer, predict_logits

        ckpt = cfg.checkpoint_dir or (runs_dir / build.name)
        run_cfg = cfg.replace(checkpoint_dir=ckpt)
        if cfg.search_trials:
            from modelshop.train.search import search

            fit, search = search(run_cfg, (fit_set.texts, fit_set.labels),
                                 (val_texts, val_labels) if val_set else None, label_names, multi,
                                 max_length, balanced=balanced, progress=progress)
        else:
            fit = fit_transformer(run_cfg, (fit_set.texts, fit_set.labels),
                                  (val_texts, val_labels) if val_set else None, label_names, multi,
                                  max_length, balanced=balanced, progress=progress)
        enc = encode(fit.tokenizer, evaluation.texts, evaluation.labels, label_names, multi, max_length)
        pad = fit.tokenizer.pad_token_id or 0
        logits = predict_logits(fit.model, pad, enc, 64, next(fit.model.parameters()).device)
        metrics = compute_metrics(evaluation.labels, probabilities(logits, multi), label_names,
                                  multi_label=multi, threshold=cfg.threshold, languages=data.eval_languages)
        fit.model.save_pretrained(build)
        fit.tokenizer.save_pretrained(build)
        charts_made["training curves"] = plots.training_curves_png(fit.history, build / "training_curves.png").name
        (build / "history.json").write_text(json.dumps(fit.history))
        fit_info = {"best_epoch": fit.best_epoch, "best_val_macro_f1": round(fit.best_val_macro_f1, 4),
                    "samples_per_s": round(fit.samples_per_s, 1), "train_seconds": round(fit.train_seconds, 1),
                    "peak_memory_mb": round(fit.peak_memory_mb, 1), "class_weights": balanced}
        meta = {"family": "transformer", "format": "pytorch", "labels": label_names, "multi_label": multi,
                "max_length": max_length, "base_model": cfg.base_model, "threshold": cfg.threshold}
        if not cfg.checkpoint_dir:  # our own scratch run folder: the registered version supersedes it
            shutil.rmtree(ckpt, ignore_errors=True)
    cm_png = plots.confusion_matrix_png(metrics["confusion_matrix"], build / "confusion_matrix.png")
    if cm_png:
        charts_made = {"confusion matrix": cm_png.name, **charts_made}
    (build / "confusion_matrix.json").write_text(json.dumps(metrics["confusion_matrix"], ensure_ascii=False))
    return TrainResult(metrics=metrics, baseline=baseline, meta=meta, charts=charts_made, fit=fit_info,
                       search=search)
