"""Fine-tuning SmolLM2-135M-Instruct on faq_en with LoRA: `modelshop llm train` beside trl's SFTTrainer.

faq_en's 503 question–answer pairs are shuffled (seed 0) and halved: the model learns from one half and
is judged on the other, questions it never saw. Both contenders get the same base (SmolLM2 registered
once, de-quantised to fp32), the same LoRA (rank, alpha, dropout, every linear layer), learning rate,
epochs, batch size, length-grouped batches, bf16 autocast where the CPU has it, loss on the answers only,
and both are judged by the same code (`modelshop.llm.evaluate.score`): perplexity of the held-out
reference answers, token-F1 and exact match of greedy answers, beside the base model's. Each contender runs
in its own process, so its peak memory (RSS) is its own. Prints the figures and the load average, since
other work shares this machine's cores.

    .venv/bin/python benchmarks/llm_finetune.py                    # both contenders, 1 epoch
    .venv/bin/python benchmarks/llm_finetune.py --only ours --epochs 3 --lr 2e-4   # llm train's defaults
    .venv/bin/python benchmarks/llm_finetune.py --rows 24 --epochs 1 --answer-limit 4   # a quick try
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "faq_en" / "faq.jsonl"
BASE = "smollm2"


def halves(rows: int | None, seed: int = 0) -> tuple[list[dict], list[dict]]:
    pairs = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(pairs)
    train, held = pairs[:len(pairs) // 2], pairs[len(pairs) // 2:]
    if rows:
        train, held = train[:rows], held[:rows]
    return train, held


def write(path: Path, pairs: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"q": p["q"], "a": p["a"]}, ensure_ascii=False) + "\n" for p in pairs),
                    encoding="utf-8")
    return path


def settings(args):
    from modelshop.settings import Settings

    return Settings(home=Path(args.home), progress=False)


def register_base(args) -> dict:
    from modelshop.llm.registry import add_local
    from modelshop.registry import Registry

    s = settings(args)
    if Registry.from_settings(s).list(BASE):
        return {"registered": "already"}
    t = time.perf_counter()
    add_local(BASE, "smollm2", settings=s)
    return {"conversion_seconds": round(time.perf_counter() - t, 1)}


def config(args):
    from modelshop.llm.finetune import FinetuneConfig

    return FinetuneConfig(base_model=BASE, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
                          lora_rank=args.rank, lora_alpha=2.0 * args.rank, lora_dropout=0.05, warmup_ratio=0.05,
                          validation_fraction=0.0, early_stopping_patience=0, seed=args.seed,
                          answer_limit=args.answer_limit, max_new_tokens=args.max_new_tokens, speed_prompts=3,
                          speed_tokens=32, mixed_precision=args.mixed_precision,
                          gradient_checkpointing=args.gradient_checkpointing)


def ours(args) -> dict:
    from modelshop.llm.finetune import run_finetune

    tmp = Path(args.home)
    result = run_finetune(tmp / "train.jsonl", tmp / "eval.jsonl", name="faq-smollm2", cfg=config(args),
                          settings=settings(args))
    fit = result["fit"]
    return {"train_seconds": fit["train_seconds"], "train_cpu_seconds": fit["train_cpu_seconds"],
            "samples_per_s": fit["samples_per_s"],
            "tokens_per_s": fit["tokens_per_s"], "eval": result["eval"], "base": result["base_eval"],
            "serving": result["serving"], "samples": result["samples"][:2], "wall_seconds": result["wall_seconds"]}


def trl(args) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers.utils import logging
    from trl import SFTConfig, SFTTrainer

    from modelshop.llm.evaluate import score
    from modelshop.llm.registry import load_causal_lm
    from modelshop.llm.sft_data import load_sft
    from modelshop.llm.sft_loop import mixed_precision
    from modelshop.registry import Registry

    logging.set_verbosity_error()
    cfg = config(args)
    tmp = Path(args.home)
    registry = Registry.from_settings(settings(args))
    row = registry.get(BASE)
    model, tokenizer, meta = load_causal_lm(registry.path(row))
    train = load_sft(tmp / "train.jsonl")
    rows = [{"prompt": c[:-1], "completion": c[-1:]} for c in train.conversations]   # conversational prompt-completion
    precision = mixed_precision(cfg.mixed_precision)
    targs = SFTConfig(output_dir=str(tmp / "trl"), num_train_epochs=cfg.epochs,
                      per_device_train_batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
                      lr_scheduler_type="linear", warmup_steps=cfg.warmup_ratio,
                      weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, seed=cfg.seed,
                      max_length=1024, packing=False, completion_only_loss=True,
                      train_sampling_strategy="group_by_length", bf16=precision == "bf16", fp16=False,
                      gradient_checkpointing=cfg.gradient_checkpointing,   # trl's default is on: same as ours here
                      use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to=[], logging_strategy="no",
                      disable_tqdm=True, dataset_num_proc=None)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    model.train()
    trainer = SFTTrainer(model=model, args=targs, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=lora)
    t0, cpu0 = time.perf_counter(), time.process_time()
    out = trainer.train()
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    merged = trainer.model.merge_and_unload().float().eval()
    held = load_sft(tmp / "eval.jsonl")
    figures = score(merged, tokenizer, held, eos_token_ids=meta["eos_token_ids"], context_length=meta["context_length"],
                    answer_limit=cfg.answer_limit, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    return {"train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu, 1),
            "samples_per_s": round(len(rows) * cfg.epochs / seconds, 2),
            "trainer_samples_per_s": out.metrics.get("train_samples_per_second"), "final_train_loss": out.training_loss,
            "eval": {k: v for k, v in figures.items() if k != "answers"},
            "samples": [{"question": a["question"], "answer": a["answer"]} for a in figures["answers"][:2]]}


def child(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    out = {"base": register_base, "ours": ours, "trl": trl}[args.child](args)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["peak_rss_mb"] = round(usage.ru_maxrss / 1024)
    out["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime)   # what the run costs whatever else shares the cores
    print("RESULT " + json.dumps(out, default=str))


def run_child(name: str, args) -> dict:
    options = {k: v for k, v in vars(args).items() if k not in ("child", "only") and v not in (None, False)}
    cmd = [sys.executable, __file__, "--child", name] + [
        f"--{k.replace('_', '-')}" + ("" if v is True else f"={v}") for k, v in options.items()]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                               # idle OpenMP threads sleep instead of spinning: on cores other work shares,
                               # spinning threads made a step 10x slower (measured); both contenders get it
                               "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
    return {**json.loads(line[7:]), "process_seconds": round(time.perf_counter() - t, 1)}


def fmt(e: dict) -> str:
    return (f"perplexity {e['perplexity']:8.3f}  token-F1 {e['token_f1']:.4f}  exact match {e['exact_match']:.4f}"
            f"  ({e['rows']} rows for perplexity, {e['answered']} answered)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, help="use only the first N pairs of each half")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4, help="one short epoch: a higher rate than llm train's 2e-4")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--answer-limit", type=int, default=32, help="held-out rows answered greedily (perplexity: all)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--mixed-precision", default="auto")
    p.add_argument("--gradient-checkpointing", action="store_true", help="for both (trl's own default is on)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="ours,trl")
    p.add_argument("--home", default="/tmp/modelshop-llm-finetune")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    if not DATA.exists():
        sys.exit(f"needs {DATA} (the shared datasets beside the clone)")
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    train, held = halves(args.rows)
    write(home / "train.jsonl", train)
    write(home / "eval.jsonl", held)
    started, load0 = time.perf_counter(), os.getloadavg()
    print(f"faq_en: {len(train)} pairs to learn from, {len(held)} held out; SmolLM2-135M-Instruct, "
          f"LoRA r={args.rank} alpha={2 * args.rank} on every linear layer, {args.epochs} epoch(s), "
          f"batch {args.batch_size}, lr {args.lr}, {args.threads} torch threads; "
          f"load average {load0[0]:.1f} on {os.cpu_count()} cores", flush=True)
    base = run_child("base", args)
    print(f"base registered: {base}", flush=True)
    results = {}
    for name in args.only.split(","):
        r = results[name] = run_child(name, args)
        if "base" in r and "base" not in results:
            results["base"] = {"eval": r["base"]}
            print(f"{'base':>5}: {fmt(r['base'])}", flush=True)
        print(f"{name:>5}: {fmt(r['eval'])}\n       training {r['samples_per_s']} samples/s ({r['train_seconds']} s, "
              f"{r['train_cpu_seconds']} CPU s), peak RSS {r['peak_rss_mb']} MB, process {r['process_seconds']} s "
              f"({r['cpu_seconds']} CPU s)", flush=True)
        if name == "ours":
            s = r["serving"]
            print(f"       decode: merged {s['merged_tokens_per_s']} tokens/s, adapter on the base "
                  f"{s['adapter_tokens_per_s']} tokens/s (same greedy tokens: {s['same_greedy_tokens']})", flush=True)
        for sample in r["samples"]:
            answer = sample.get("fine_tuned") or sample["answer"]
            print(f"       Q: {sample['question'][:100]}\n       A: {answer[:160]}")
    load1 = os.getloadavg()
    print(f"wall {time.perf_counter() - started:.0f} s; load average {load0[0]:.1f} at the start, {load1[0]:.1f} at "
          f"the end (1-minute), {load1[2]:.1f} over 15 minutes")
    print("RESULTS " + json.dumps(results, default=str))


if __name__ == "__main__":
    main()
