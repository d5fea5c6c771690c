"""Training and evaluation (seed node D): fine-tune BERT-family models, fit the tfidf baseline,
measure both, write the model card and charts, register the result.

May import: data, inference, registry, db, settings, errors.
"""

from modelshop.train.config import TrainConfig

__all__ = ["TrainConfig", "run_training", "evaluate", "score_file"]


def __getattr__(name: str):  # keep `import modelshop.train` light: torch loads on first use
    if name == "run_training":
        from modelshop.train.pipeline import run_training

        return run_training
    if name in ("evaluate", "score_file"):
        from modelshop.train import scoring

        return getattr(scoring, name)
    raise AttributeError(name)
