"""Training throughput: ours vs transformers.Trainer (dynamic padding) vs the AutoTrain recipe.

Same data, model, seed and hyperparameters in one run; each contender in its own process so
peak memory is its own. Prints samples/s, peak RSS and the final macro-F1 on the eval texts.

    .venv/bin/python benchmarks/train_throughput.py            # rotten_tomatoes, 3000 rows, 1 epoch
    .venv/bin/python benchmarks/train_throughput.py --rows 10313 --epochs 2
    .venv/bin/python benchmarks/train_throughput.py --only ours,trainer --seeds 1,2,3,4,5   # F1 over seeds
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rotten_tomatoes"


def load(rows: int, eval_rows: int):
    def read(p, n):
        out = [json.loads(line) for line in p.read_text().splitlines()[:n]]
        return [r["text"] for r in out], [r["label"] for r in out]

    return read(DATA / "train.jsonl", rows), read(DATA / "test.jsonl", eval_rows)


def ours(args) -> dict:
    from sklearn.metrics import f1_score

    from modelshop.train.config import TrainConfig
    from modelshop.train.loop import encode, fit_transformer, predict_logits

    (tx, ty), (ex, ey) = load(args.rows, args.eval_rows)
    labels = sorted(set(ty))
    cfg = TrainConfig(base_model="minilm", epochs=args.epochs, batch_size=args.batch_size,
                      learning_rate=args.lr, warmup_ratio=0.1, seed=args.seed, early_stopping_patience=0)
    fit = fit_transformer(cfg, (tx, ty), None, labels, False, args.max_length, balanced=False, progress=False)
    enc = encode(fit.tokenizer, ex, ey, labels, False, args.max_length)
    logits = predict_logits(fit.model, fit.tokenizer.pad_token_id, enc, 64, "cpu")
    f1 = f1_score(enc.targets.numpy(), logits.argmax(1), average="macro")
    return {"samples_per_s": len(tx) * args.epochs / fit.train_seconds, "train_seconds": fit.train_seconds,
            "macro_f1": f1}


def trainer(args, pad_to_max: bool) -> dict:
    import numpy as np
    import torch
    import transformers
    from sklearn.metrics import f1_score
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        default_data_collator,
    )

    from modelshop.train.base_models import minilm_path

    transformers.logging.set_verbosity_error()
    (tx, ty), (ex, ey) = load(args.rows, args.eval_rows)
    labels = sorted(set(ty))
    index = {lab: i for i, lab in enumerate(labels)}
    tok = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels))
    padding = "max_length" if pad_to_max else False

    class DS(torch.utils.data.Dataset):
        def __init__(self, texts, ys):
            self.enc = tok(texts, truncation=True, max_length=args.max_length, padding=padding)
            self.ys = [index[y] for y in ys]

        def __len__(self):
            return len(self.ys)

        def __getitem__(self, i):
            item = {k: v[i] for k, v in self.enc.items()}
            item["labels"] = self.ys[i]
            return item

    train_ds, eval_ds = DS(tx, ty), DS(ex, ey)
    targs = TrainingArguments(output_dir=str(Path(args.tmp) / ("autotrain" if pad_to_max else "trainer")),
                              per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
                              num_train_epochs=args.epochs, learning_rate=args.lr,
                              warmup_steps=int(0.1 * math.ceil(len(tx) / args.batch_size) * args.epochs),
                              weight_decay=0.01, seed=args.seed, save_strategy="no", report_to=[],
                              logging_strategy="no", disable_tqdm=True, use_cpu=True)
    collator = default_data_collator if pad_to_max else DataCollatorWithPadding(tok)
    t = Trainer(model=model, args=targs, train_dataset=train_ds, data_collator=collator)
    t0 = time.perf_counter()
    t.train()
    seconds = time.perf_counter() - t0
    pred = t.predict(eval_ds).predictions
    f1 = f1_score(np.array(eval_ds.ys), pred.argmax(1), average="macro")
    return {"samples_per_s": len(tx) * args.epochs / seconds, "train_seconds": seconds, "macro_f1": f1}


def child(args) -> None:
    fn = {"ours": lambda: ours(args), "trainer": lambda: trainer(args, False),
          "autotrain": lambda: trainer(args, True)}[args.child]
    out = fn()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--eval-rows", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seeds", help="comma-separated seeds: run every contender once per seed, report means")
    p.add_argument("--only", default="ours,trainer,autotrain")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--tmp", default="/tmp/modelshop-bench")
    args = p.parse_args()
    if args.child:
        return child(args)
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared datasets beside the clone)")
    print(f"rotten_tomatoes: {args.rows} train rows, {args.eval_rows} eval rows, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, max_length {args.max_length}, lr {args.lr}, minilm")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    runs: dict[str, list[dict]] = {}
    for seed in seeds:
        args.seed = seed
        for name in args.only.split(","):
            cmd = [sys.executable, __file__, "--child", name] + [
                f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                if k not in ("child", "only", "seeds")]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(line[7:])
            runs.setdefault(name, []).append(r)
            print(f"{name:>10} seed {seed}: {r['samples_per_s']:7.1f} samples/s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                  f"macro-F1 {r['macro_f1']:.4f}  ({r['train_seconds']:.0f} s)", flush=True)
    results = {name: {k: sum(r[k] for r in rs) / len(rs) for k in rs[0]} for name, rs in runs.items()}
    if len(seeds) > 1:
        import statistics

        print(f"means over {len(seeds)} seeds:")
        for name, rs in runs.items():
            f1s = [r["macro_f1"] for r in rs]
            print(f"{name:>10}: {results[name]['samples_per_s']:7.1f} samples/s  macro-F1 {statistics.mean(f1s):.4f} "
                  f"± {statistics.stdev(f1s):.4f} (sd)  min {min(f1s):.4f}  max {max(f1s):.4f}")
        if {"ours", "trainer"} <= runs.keys():
            diffs = [o["macro_f1"] - t["macro_f1"] for o, t in zip(runs["ours"], runs["trainer"], strict=True)]
            print(f"ours − Trainer macro-F1, same seed: mean {statistics.mean(diffs):+.4f}, "
                  f"ours ahead in {sum(d >= 0 for d in diffs)} of {len(diffs)}")
    if {"ours", "trainer", "autotrain"} <= results.keys():
        o = results["ours"]["samples_per_s"]
        print(f"ours / Trainer (dynamic padding): {o / results['trainer']['samples_per_s']:.2f}x  (target ≥ 1.2x)")
        print(f"ours / AutoTrain recipe (max_length padding): {o / results['autotrain']['samples_per_s']:.2f}x  "
              "(target ≥ 2x)")


if __name__ == "__main__":
    main()
