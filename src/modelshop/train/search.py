"""Hyperparameter search with Optuna: every trial recorded, the best by validation macro-F1 kept."""

from __future__ import annotations

import optuna

from modelshop.errors import ValidationError
from modelshop.train.config import TrainConfig
from modelshop.train.loop import FitResult, fit_transformer


def search(cfg: TrainConfig, train, val, label_names: list[str], multi_label: bool, max_length: int, *,
           balanced: bool, progress: bool = True) -> tuple[FitResult, list[dict]]:
    """Run `cfg.search_trials` trials (TPE, seeded); return the best fit and the table of trials."""
    if val is None:
        raise ValidationError("search needs a validation split: set validation_fraction > 0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best: dict = {"fit": None}
    trials: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        params = {
            "learning_rate": trial.suggest_float("learning_rate", 1e-5, 2e-4, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [16, 32, 64]),
            "warmup_ratio": trial.suggest_float("warmup_ratio", 0.0, 0.2),
            "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.1),
        }
        trial_cfg = cfg.replace(**params, epochs=cfg.search_epochs or cfg.epochs,
                                checkpoint_dir=(cfg.checkpoint_dir / f"trial-{trial.number}"
                                                if cfg.checkpoint_dir else None))
        fit = fit_transformer(trial_cfg, train, val, label_names, multi_label, max_length,
                              balanced=balanced, progress=progress)
        trials.append({"trial": trial.number, **{k: (round(v, 6) if isinstance(v, float) else v)
                                                 for k, v in params.items()},
                       "val_macro_f1": round(fit.best_val_macro_f1, 4), "best_epoch": fit.best_epoch})
        if best["fit"] is None or fit.best_val_macro_f1 > best["fit"].best_val_macro_f1:
            best["fit"] = fit
        return fit.best_val_macro_f1

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=cfg.search_trials)
    for t in trials:
        t["best"] = t["trial"] == study.best_trial.number
    return best["fit"], trials
