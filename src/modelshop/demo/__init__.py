"""`modelshop demo`: the whole path on embedded defaults, from the bundled dataset to a result.

profile → train `minilm` → evaluate beside tfidf → register (production) → print the figures.
May import every other part: it is the one place that strings them together.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modelshop.settings import Settings, get_settings

DATA = Path(__file__).parent / "data" / "support_messages.jsonl"
MODEL_NAME = "support-intent"


def run_demo(settings: Settings | None = None, *, epochs: int = 8, base_model: str = "minilm",
             say: Callable[[str], None] = print) -> dict:
    """Run the demo pipeline and return what it made (also said step by step through `say`)."""
    from modelshop.data import load_dataset, profile_dataset, write_report
    from modelshop.train import TrainConfig, run_training
    from modelshop.train.base_models import load_tokenizer

    settings = settings or get_settings()
    say(f"modelshop home: {settings.home}")
    ds = load_dataset(DATA)
    tokenizer = load_tokenizer(base_model) if base_model != "tfidf" else None
    profile = profile_dataset(ds, tokenizer)
    report = write_report(profile, settings.home / "reports" / "demo-data", title="Demo data: support messages")
    say(f"[1/3] profiled {profile['rows']} messages, {profile['num_labels']} labels "
        f"(imbalance {profile['imbalance_ratio']}:1), PII found: {profile['pii'] or 'none'} → {report}")
    say(f"[2/3] fine-tuning {base_model} beside the tfidf baseline ({epochs} epochs)…")
    # small data: a higher rate and more passes; early stopping ends it when validation F1 stalls
    cfg = TrainConfig(base_model=base_model, epochs=epochs, learning_rate=2e-4, batch_size=16)
    result = run_training(ds, name=MODEL_NAME, cfg=cfg, settings=settings)
    b = result.get("baseline") or {}
    say(f"[3/3] registered {result['name']}:{result['version']} ({result['stage']}): "
        f"macro-F1 {result['macro_f1']:.3f}, accuracy {result['accuracy']:.3f}"
        + (f"; tfidf macro-F1 {b['macro_f1']:.3f}" if b else ""))
    say(f"      recommended: {result['recommended']}: {result['reason']}")
    say(f"      model card: {result['card']}")
    for title, path in result["charts"].items():
        say(f"      {title}: {path}")
    return {"profile": profile, "report": str(report), "train": result}
