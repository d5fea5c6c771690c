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

import numpy as np

from modelshop.data import Dataset, detect_languages, load_dataset, profile_dataset, stratified_split
from modelshop.errors import ValidationError
from modelshop.inference import META_FILE
from modelshop.inference.base import probabilities
from modelshop.inference.ensemble import mix, text_languages
from modelshop.inference.tfidf import decision_logits
from modelshop.registry import Registry
from modelshop.settings import Settings, get_settings
from modelshop.train import layout, plots
from modelshop.train.card import data_context, model_card
from modelshop.train.config import TrainConfig
from modelshop.train.ensemble import Choice, choose, combine_weights, label_targets
from modelshop.train.metrics import compute_metrics, headline
from modelshop.train.processes import process_state
from modelshop.train.tfidf import fit_tfidf

MIN_ROWS_FOR_VALIDATION = 20  # below this, carving a validation split leaves too little to learn from
# A language the combination tells apart holds at least this share of the training texts: rarer codes are
# mostly short messages the detector misread, and as candidates they would pull texts away from the real ones.
LANGUAGE_SHARE = 0.02


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
    languages: list[str] | None = None       # the training data's languages (LANGUAGE_SHARE+), for the combination


@dataclass(frozen=True)
class TrainResult:
    """What `_train_into` built into the version's folder, for the card, metrics.json and the registry."""

    metrics: dict                       # the deployed model on the evaluation set (`compute_metrics`)
    baseline: dict | None               # the tfidf model's headline figures; None when only tfidf was trained
    meta: dict                          # the folder's META_FILE: family, format, labels, max length, ...
    charts: dict[str, str]              # title → PNG file name in the folder
    fit: dict | None = None             # a transformer's fit: best epoch, speed, memory, class weights
    search: list[dict] | None = None    # the hyperparameter trials, when the config asked for a search
    recommended: str = "tfidf"          # what the validation figures advise: transformer | tfidf | ensemble
    reason: str = "Only the tfidf model was trained."
    candidates: dict | None = None      # every trained model's headline evaluation figures, by name
    validation: dict | None = None      # the validation figures the recommendation rests on


@dataclass(frozen=True)
class Scored:
    """One candidate's probabilities on the evaluation and validation rows, and its evaluation figures."""

    eval_probs: np.ndarray
    val_probs: np.ndarray | None
    metrics: dict


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
                           eval_languages=detect_languages(evaluation.texts), languages=_languages(profile))
        result = _train_into(build, cfg, run_data, progress=progress, runs_dir=settings.runs_dir)
        meta = result.meta
        data_info = {"train": train.source, "eval": eval_source, "train_sha256": train_sha256,
                     "eval_sha256": evaluation.fingerprint(), "train_rows": len(fit_set),
                     "parent": parent_id}
        rec, reason = result.recommended, result.reason + data_context(profile)
        figures = {**headline(result.metrics), "confusion_matrix": result.metrics["confusion_matrix"]}
        card = model_card(name=name, base_model=meta["base_model"], family=meta["family"], labels=label_names,
                          multi_label=multi, metrics=result.metrics, baseline=result.baseline,
                          recommended=rec, reason=reason, profile=profile, config=cfg.to_dict(),
                          data=data_info, fit=result.fit, charts=result.charts, candidates=result.candidates,
                          validation=result.validation,
                          combination=meta if meta["family"] == "ensemble" else None)
        (build / "card.md").write_text(card, encoding="utf-8")
        (build / "profile.json").write_text(json.dumps(profile, ensure_ascii=False, indent=1, default=str))
        stored = {**figures, "baseline": result.baseline, "candidates": result.candidates, "recommended": rec,
                  "reason": reason, "validation": result.validation, "fit": result.fit, "max_length": max_length,
                  "config": cfg.to_dict(), "data": data_info, "search": result.search}
        (build / "metrics.json").write_text(json.dumps(stored, ensure_ascii=False, indent=1))
        (build / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        processes.wait_for_everyone()  # every process has trained and written: one version, once
        if not main:
            _leave_quietly()
        row = registry.register(name, build, family=meta["family"], format=meta["format"],
                                base_model=meta["base_model"], labels=label_names, multi_label=multi,
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
            "baseline": result.baseline, "candidates": result.candidates, "recommended": rec, "reason": reason,
            "validation": result.validation, "max_length": max_length, "path": str(folder),
            "card": str(folder / "card.md"),
            "charts": {k: str(folder / v) for k, v in result.charts.items()},
            "fit": result.fit, "search": result.search,
            "wall_seconds": round(time.perf_counter() - started, 1)}


def _leave_quietly() -> None:
    """End a non-main process of a launch: its part (training with the others) is done, and the
    main process alone registers and prints, so a launch prints one result and makes one version.
    `finally` blocks still run (its scratch folder is removed); the launcher sees exit status 0."""
    raise SystemExit(0)


def _languages(profile: dict) -> list[str]:
    """The languages of the training texts that hold LANGUAGE_SHARE of them, most texts first."""
    langs = profile.get("languages") or {}
    return [code for code, share in (langs.get("shares") or {}).items() if code != "und" and share >= LANGUAGE_SHARE]


def _train_into(build: Path, cfg: TrainConfig, data: RunData, *, progress: bool, runs_dir: Path) -> TrainResult:
    """Fit the tfidf model (and the transformer, unless the run is tfidf's alone), choose on the validation
    split what to deploy, evaluate every candidate, and write the deployed one's files, charts and
    confusion matrix into `build`; a transformer's scratch checkpoints go under `runs_dir` unless the
    config names a checkpoint folder."""
    pipe, tfidf, tfidf_info = _fit_tfidf(cfg, data) if cfg.tfidf_baseline or cfg.is_tfidf else (None, None, None)
    tf_meta = layout.tfidf_meta(data.label_names, data.multi_label, cfg.threshold)
    if cfg.is_tfidf:
        meta = layout.write_tfidf(build, pipe, tf_meta)
        return _finish(build, TrainResult(metrics=tfidf.metrics, baseline=None, meta=meta, charts={}))
    fit, transformer, fit_info, search = _fit_transformer(cfg, data, progress=progress,
                                                          scratch=runs_dir / build.name)
    choice = _choose(cfg, data, transformer, tfidf)
    deploy = choice.deploy if cfg.deploy == "recommended" else cfg.deploy
    weights, languages = choice.weights, choice.languages
    if deploy == "ensemble" and weights is None:  # asked for though not advised: weights from what there is
        weights, languages = _asked_weights(cfg, data, transformer, tfidf)
    scored = {"transformer": transformer, **({"tfidf": tfidf} if tfidf else {})}
    if weights is not None:  # the best combination's figures, deployed or not
        probs = mix(transformer.eval_probs, tfidf.eval_probs, text_languages(data.evaluation.texts, languages),
                    weights)
        scored["ensemble"] = Scored(probs, None, _metrics(cfg, data, probs))
    tr_meta = layout.transformer_meta(data.label_names, data.multi_label, data.max_length, cfg.base_model,
                                      cfg.threshold)
    if deploy == "transformer":
        meta = layout.write_transformer(build, fit, tr_meta)
    elif deploy == "tfidf":
        meta = layout.write_tfidf(build, pipe, tf_meta)
    else:
        meta = layout.write_ensemble(build, fit, pipe, tr_meta, tf_meta, weights=weights, languages=languages)
    charts = {"training curves": plots.training_curves_png(fit.history, build / "training_curves.png").name}
    (build / "history.json").write_text(json.dumps(fit.history))
    reason = choice.reason
    if deploy != choice.deploy:
        reason += f" Deployed: {deploy}, as the training options asked (deploy: {cfg.deploy})."
    reason += " On the evaluation set: " + ", ".join(
        f"{'combination' if k == 'ensemble' else k} {v.metrics['macro_f1']:.3f}" for k, v in scored.items()) + \
        " macro-F1."
    return _finish(build, TrainResult(
        metrics=scored[deploy].metrics, baseline={**headline(tfidf.metrics), **tfidf_info} if tfidf else None,
        meta=meta, charts=charts, fit=fit_info, search=search, recommended=choice.deploy, reason=reason,
        candidates={k: headline(v.metrics) for k, v in scored.items()}, validation=choice.validation or None))


def _finish(build: Path, result: TrainResult) -> TrainResult:
    """The deployed model's confusion matrix (JSON and PNG) beside its files; the charts listed first."""
    cm = result.metrics["confusion_matrix"]
    charts = dict(result.charts)
    cm_png = plots.confusion_matrix_png(cm, build / "confusion_matrix.png")
    if cm_png:
        charts = {"confusion matrix": cm_png.name, **charts}
    (build / "confusion_matrix.json").write_text(json.dumps(cm, ensure_ascii=False))
    return TrainResult(**{**result.__dict__, "charts": charts})


def _metrics(cfg: TrainConfig, data: RunData, probs: np.ndarray) -> dict:
    return compute_metrics(data.evaluation.labels, probs, data.label_names, multi_label=data.multi_label,
                           threshold=cfg.threshold, languages=data.eval_languages)


def _fit_tfidf(cfg: TrainConfig, data: RunData):
    """(pipeline, its Scored figures, what its fit tried)."""
    val = data.val
    pipe, info = fit_tfidf(data.fit.texts, data.fit.labels, data.label_names, multi_label=data.multi_label,
                           val_texts=val.texts if val is not None else None,
                           val_labels=val.labels if val is not None else None, balanced=data.balanced,
                           threshold=cfg.threshold)

    def probs(texts: list[str]) -> np.ndarray:
        return probabilities(decision_logits(pipe, texts, data.multi_label), data.multi_label)

    eval_probs = probs(data.evaluation.texts)
    scored = Scored(eval_probs, probs(val.texts) if val is not None else None, _metrics(cfg, data, eval_probs))
    return pipe, scored, info


def _fit_transformer(cfg: TrainConfig, data: RunData, *, progress: bool, scratch: Path):
    """(the fit, its Scored figures, the fit's summary, the search trials or None); checkpoints go to the
    config's folder, else to `scratch`, removed afterwards."""
    from modelshop.train.loop import encode, fit_transformer, predict_logits

    fit_set, val_set = data.fit, data.val
    val = (val_set.texts, val_set.labels) if val_set is not None else None
    ckpt = cfg.checkpoint_dir or scratch
    run_cfg = cfg.replace(checkpoint_dir=ckpt)
    search = None
    if cfg.search_trials:
        from modelshop.train.search import search as run_search

        fit, search = run_search(run_cfg, (fit_set.texts, fit_set.labels), val, data.label_names, data.multi_label,
                                 data.max_length, balanced=data.balanced, progress=progress)
    else:
        fit = fit_transformer(run_cfg, (fit_set.texts, fit_set.labels), val, data.label_names, data.multi_label,
                              data.max_length, balanced=data.balanced, progress=progress)
    if not cfg.checkpoint_dir:  # our own scratch run folder: the registered version supersedes it
        shutil.rmtree(ckpt, ignore_errors=True)
    pad = fit.tokenizer.pad_token_id or 0
    device = next(fit.model.parameters()).device

    def probs(ds: Dataset) -> np.ndarray:
        enc = encode(fit.tokenizer, ds.texts, ds.labels, data.label_names, data.multi_label, data.max_length)
        return probabilities(predict_logits(fit.model, pad, enc, 64, device), data.multi_label)

    eval_probs = probs(data.evaluation)
    scored = Scored(eval_probs, probs(val_set) if val_set is not None else None, _metrics(cfg, data, eval_probs))
    fit_info = {"best_epoch": fit.best_epoch, "best_val_macro_f1": round(fit.best_val_macro_f1, 4),
                "samples_per_s": round(fit.samples_per_s, 1), "train_seconds": round(fit.train_seconds, 1),
                "peak_memory_mb": round(fit.peak_memory_mb, 1), "class_weights": data.balanced}
    return fit, scored, fit_info, search


def _choose(cfg: TrainConfig, data: RunData, transformer: Scored, tfidf: Scored | None) -> Choice:
    if tfidf is None:
        return Choice("transformer", "No tfidf model was fitted for comparison (tfidf_baseline is off).")
    if data.val is None:
        return Choice("transformer", "No validation split (too few training rows, or validation_fraction 0), "
                      "so nothing to choose on: the transformer asked for is deployed.")
    return choose(data.val.texts, data.val.labels, data.label_names, transformer.val_probs, tfidf.val_probs,
                  multi_label=data.multi_label, threshold=cfg.threshold, languages=data.languages, seed=cfg.seed)


def _asked_weights(cfg: TrainConfig, data: RunData, transformer: Scored, tfidf: Scored) -> tuple[dict, list[str]]:
    """The combination's weights when the options ask for it though no choice advised it: chosen on the
    validation rows there are, else an even mix."""
    if data.val is None:
        return {"default": 0.5, "per_language": {}}, []
    languages = list(data.languages or [])
    truth = label_targets(data.val.labels, data.label_names, data.multi_label)
    codes = text_languages(data.val.texts, languages)
    return combine_weights(truth, transformer.val_probs, tfidf.val_probs, codes, multi_label=data.multi_label,
                           threshold=cfg.threshold), languages
