"""Training options: one dataclass, every setting with its default and the reason for it.

Bad combinations are refused in `__post_init__`, naming the option. Loadable from YAML.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from modelshop.errors import ValidationError, did_you_mean

DEPLOY = ("recommended", "transformer", "tfidf", "ensemble")


@dataclass
class TrainConfig:
    base_model: str = "minilm"          # minilm | tfidf | local folder | hub id
    epochs: int = 3                     # small data converges in a few passes; early stopping guards the rest
    batch_size: int = 32                # fits 2 CPU cores and any GPU at max_length 128
    learning_rate: float = 5e-5         # the usual BERT fine-tuning rate
    warmup_ratio: float = 0.1           # linear warm-up over the first 10% of steps, then linear decay
    weight_decay: float = 0.01          # AdamW, not on biases and LayerNorm
    max_length: int | None = None       # None: recommended from the data's token lengths
    seed: int = 42                      # same seed, same data, same hardware → same model
    class_weights: str = "auto"         # auto: balanced weights when imbalance ratio ≥ 3 | balanced | none
    early_stopping_patience: int = 2    # epochs without a better validation macro-F1 before stopping
    validation_fraction: float = 0.1    # carved from train (stratified) for early stopping and search
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"       # auto: bf16/fp16 on a GPU that has it, none on CPU | no | fp16 | bf16
    group_by_length: bool = True        # batches of similar length: the biggest speed lever on short texts
    max_grad_norm: float = 1.0
    threshold: float = 0.5              # multi-label decision threshold on sigmoid scores
    tfidf_baseline: bool = True         # fit and report the tfidf model beside every transformer run
    deploy: str = "recommended"         # what the version serves: recommended (chosen on validation figures) |
                                        # transformer | tfidf | ensemble (the two combined)
    search_trials: int = 0              # > 0: Optuna search over lr, batch size, warm-up, weight decay
    search_epochs: int | None = None    # epochs per search trial (default: epochs)
    checkpoint_dir: Path | None = None  # where per-epoch checkpoints go (default: a run folder under home)
    resume: bool = False                # continue from the last checkpoint in checkpoint_dir
    limit: int | None = None            # use only the first N training rows (quick tries)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        def bad(option: str, why: str) -> ValidationError:
            return ValidationError(f"{option}: {why}")

        if self.epochs < 1:
            raise bad("epochs", f"must be ≥ 1, got {self.epochs}")
        if self.batch_size < 1:
            raise bad("batch_size", f"must be ≥ 1, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise bad("learning_rate", f"must be between 0 and 1, got {self.learning_rate}")
        if not 0 <= self.warmup_ratio < 1:
            raise bad("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise bad("weight_decay", f"must be ≥ 0, got {self.weight_decay}")
        if self.max_length is not None and not 8 <= self.max_length <= 8192:
            raise bad("max_length", f"must be between 8 and 8192, got {self.max_length}")
        if self.class_weights not in {"auto", "balanced", "none"}:
            raise bad("class_weights", f'must be auto, balanced or none, got "{self.class_weights}"'
                      + did_you_mean(self.class_weights, ["auto", "balanced", "none"]))
        if self.mixed_precision not in {"auto", "no", "fp16", "bf16"}:
            raise bad("mixed_precision", f'must be auto, no, fp16 or bf16, got "{self.mixed_precision}"')
        if self.gradient_accumulation_steps < 1:
            raise bad("gradient_accumulation_steps", "must be ≥ 1")
        if not 0 <= self.validation_fraction < 0.5:
            raise bad("validation_fraction", f"must be in [0, 0.5), got {self.validation_fraction}")
        if self.early_stopping_patience < 0:
            raise bad("early_stopping_patience", "must be ≥ 0 (0 turns early stopping off)")
        if not 0 < self.threshold < 1:
            raise bad("threshold", "must be between 0 and 1")
        if self.deploy not in DEPLOY:
            raise bad("deploy", f'must be {", ".join(DEPLOY[:-1])} or {DEPLOY[-1]}, got "{self.deploy}"'
                      + did_you_mean(self.deploy, DEPLOY))
        if self.deploy in ("tfidf", "ensemble") and not (self.tfidf_baseline or self.is_tfidf):
            raise bad("deploy", f"{self.deploy} needs the tfidf model: leave tfidf_baseline on")
        if self.is_tfidf and self.deploy in ("transformer", "ensemble"):
            raise bad("deploy", f'{self.deploy} needs a transformer base model, not "tfidf"')
        if self.search_trials < 0:
            raise bad("search_trials", "must be ≥ 0")
        if self.resume and self.checkpoint_dir is None:
            raise bad("resume", "needs checkpoint_dir: the run folder to resume from")
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = Path(self.checkpoint_dir)

    @property
    def is_tfidf(self) -> bool:
        return self.base_model == "tfidf"

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["checkpoint_dir"] = str(self.checkpoint_dir) if self.checkpoint_dir else None
        return d

    @classmethod
    def from_yaml(cls, path: Path, **overrides) -> TrainConfig:
        """Options from a YAML mapping; explicit `overrides` (from the command line) win."""
        path = Path(path)
        if not path.is_file():
            raise ValidationError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValidationError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValidationError(f"config file {path} must be a mapping of option: value")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ValidationError(f'unknown training option "{key}"{did_you_mean(key, names)}')
        try:
            return cls(**data)
        except TypeError as e:
            raise ValidationError(f"training options: {e}") from None
