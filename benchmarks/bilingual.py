"""Bilingual classification: what `train` recommends and registers, against each single model, per language.

One `run_training` fits minilm and tfidf on a mixed English + Chinese set, chooses on its validation split
what to deploy (the transformer, tfidf, or both mixed per language), and evaluates every candidate on the
held-out rows; this prints the per-language macro-F1 of each from that one run, and checks that the
registered version, scored again through `modelshop eval`'s function, gives the figures reported.

Sets (`--set`):
    reviews   movie-review sentiment (fresh / rotten): rotten_tomatoes from ../shared/datasets (English; a
              seeded sample of its train and test files) + 258 Chinese reviews written for this benchmark
              (benchmarks/data/zh_movie_reviews.jsonl; 20 % of them held out, seeded, stratified)
    support   the demo's bundled customer-service intents (8 labels, English + Chinese), as `modelshop demo`
              trains on it: 20 % held out, minilm 8 epochs at learning rate 2e-4, batch 16

    .venv/bin/python benchmarks/bilingual.py                    # reviews: 800 + 206 training rows, 3 epochs
    .venv/bin/python benchmarks/bilingual.py --set support
    .venv/bin/python benchmarks/bilingual.py --en-train 2000 --epochs 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
ZH_REVIEWS = ROOT / "benchmarks" / "data" / "zh_movie_reviews.jsonl"
DEMO_DATA = ROOT / "src" / "modelshop" / "demo" / "data" / "support_messages.jsonl"


def read(path: Path) -> list[dict]:
    # split on "\n" alone: a review may hold U+2028 and the like, which splitlines() would break at
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def reviews(folder: Path, en_train: int, en_eval: int, seed: int) -> tuple[Path, Path]:
    """(train, eval) JSONL files: a seeded sample of rotten_tomatoes and the Chinese reviews, shuffled."""
    from modelshop.data import load_dataset, stratified_split

    rng = random.Random(seed)
    en_tr = rng.sample(read(SHARED / "rotten_tomatoes" / "train.jsonl"), en_train)
    en_ev = rng.sample(read(SHARED / "rotten_tomatoes" / "test.jsonl"), en_eval)
    zh_tr, zh_ev = stratified_split(load_dataset(ZH_REVIEWS), test_size=0.2, seed=seed)
    train = en_tr + [{"text": t, "label": y} for t, y in zip(zh_tr.texts, zh_tr.labels, strict=True)]
    evaluation = en_ev + [{"text": t, "label": y} for t, y in zip(zh_ev.texts, zh_ev.labels, strict=True)]
    rng.shuffle(train)
    rng.shuffle(evaluation)
    return write(folder / "train.jsonl", train), write(folder / "eval.jsonl", evaluation)


def table(result: dict) -> list[str]:
    """Per-language and overall macro-F1 of each candidate, the deployed one marked."""
    deployed = result["family"]
    cands = result["candidates"]
    langs = list(result.get("per_language") or {})
    head = "| model | " + " | ".join(f"{c} macro-F1 (n={result['per_language'][c]['n']})" for c in langs) \
        + " | all macro-F1 | accuracy |"
    lines = [head, "|" + " --- |" * head.count(" |")]
    for name in ("transformer", "tfidf", "ensemble"):
        m = cands.get(name)
        if m is None:
            continue
        per = m.get("per_language") or {}
        label = ("combination per language" if name == "ensemble" else name) + \
            (" **(recommended, registered)**" if name == deployed else "")
        lines.append(f"| {label} | " + " | ".join(f"{per.get(c, {}).get('macro_f1', float('nan')):.3f}" for c in langs)
                     + f" | {m['macro_f1']:.3f} | {m['accuracy']:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", choices=("reviews", "support"), default="reviews")
    ap.add_argument("--en-train", type=int, default=800, help="rotten_tomatoes training rows (reviews)")
    ap.add_argument("--en-eval", type=int, default=400, help="rotten_tomatoes test rows (reviews)")
    ap.add_argument("--epochs", type=int, default=None, help="default: 3 (reviews), 8 (support)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    from modelshop.settings import Settings
    from modelshop.train import TrainConfig, evaluate, run_training

    with tempfile.TemporaryDirectory(prefix="modelshop-bilingual-") as tmp:
        folder = Path(tmp)
        settings = Settings(home=folder / "home", progress=False)
        if args.set == "reviews":
            if not (SHARED / "rotten_tomatoes").is_dir():
                print(f"needs {SHARED / 'rotten_tomatoes'}", file=sys.stderr)
                return 2
            train, evaluation = reviews(folder, args.en_train, args.en_eval, args.seed)
            cfg = TrainConfig(base_model="minilm", epochs=args.epochs or 3, seed=args.seed)
        else:
            train, evaluation = DEMO_DATA, None
            cfg = TrainConfig(base_model="minilm", epochs=args.epochs or 8, learning_rate=2e-4, batch_size=16,
                              seed=args.seed)
        started = time.perf_counter()
        result = run_training(train, evaluation, name="bilingual", cfg=cfg, settings=settings)
        seconds = time.perf_counter() - started
        # the registered version scored again, loaded as the server loads it: the figures it reported
        held_out = evaluation or (folder / "held-out.jsonl")
        if evaluation is None:
            from modelshop.data import load_dataset, stratified_split

            _, ev = stratified_split(load_dataset(DEMO_DATA), test_size=0.2, seed=args.seed)
            write(held_out, [{"text": t, "label": y} for t, y in zip(ev.texts, ev.labels, strict=True)])
        again = evaluate(f"bilingual:{result['version']}", held_out, settings=settings)
    print(f"set {args.set}: {result['candidates']['transformer']['n']} held-out rows; wall {seconds:.0f} s "
          f"(fine-tuning {result['fit']['train_seconds']:.0f} s at {result['fit']['samples_per_s']:.0f} samples/s)")
    print("\n".join(table(result)))
    print(f"\nvalidation (the choice): {json.dumps(result['validation'], ensure_ascii=False)}")
    print(f"recommended: {result['recommended']}: {result['reason']}")
    print(f"eval of the registered bilingual:{result['version']} ({result['family']}): "
          f"macro-F1 {again['macro_f1']:.4f} (train reported {result['macro_f1']:.4f}); per language "
          + ", ".join(f"{c} {m['macro_f1']:.3f}" for c, m in (again.get("per_language") or {}).items()))
    if args.json:
        args.json.write_text(json.dumps({"set": args.set, "wall_seconds": round(seconds, 1), "result": result,
                                         "eval": again}, ensure_ascii=False, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
