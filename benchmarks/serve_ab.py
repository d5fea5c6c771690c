"""A/B runs of server configurations on one model, for figures that one serve_load run is too noisy for.

Each configuration is a JSON object of environment variables for `modelshop serve` (e.g.
'{"MODELSHOP_SERVE_WORKERS": "1"}'; "servers": N starts N servers and spreads the clients over them;
any variable can be set, PYTHONPATH included, to serve another checkout of the code); the
configurations are run in turn, --reps times, each run sending
the test texts one per request from 32 keep-alive clients (serve_load's load generator), and the mean
req/s of each is printed. On a shared 2-core VM single runs vary by ±10 %: compare means.

    .venv/bin/python benchmarks/serve_ab.py --home H --model M '{"MODELSHOP_SERVE_WORKERS": "1"}' '{}'
    .venv/bin/python benchmarks/serve_ab.py --home H --model M '{}' \
        '{"servers": 2, "MODELSHOP_SERVE_WORKERS": "1", "MODELSHOP_TORCH_THREADS": "1"}'   # 16 clients each
    .venv/bin/python benchmarks/serve_ab.py --home H --model M --bare           # packed forward, no HTTP:
                                                                                # 1 worker × 2 threads vs 2 × 1
H is a modelshop home holding an fp32 minilm model M (serve_load.py leaves one in its temp home).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_load as sl  # the load generator and server helpers of the main benchmark


def run_load(ports: list[int], model: str, texts: list[str]) -> float:
    """req/s of every text sent once, the 32 clients spread over `ports` in turn."""
    bodies = [(i, json.dumps(sl.ours_body(t)).encode()) for i, t in enumerate(texts)]
    latencies: list[float] = []
    answers: dict = {}

    async def main():
        deadline = time.perf_counter() + 600
        await asyncio.gather(*(sl._connection(ports[c % len(ports)], f"/predict?model={model}", sl.KEY,
                                              bodies[c::sl.CLIENTS], latencies, answers, deadline)
                               for c in range(sl.CLIENTS)))

    started = time.perf_counter()
    asyncio.run(main())
    ok = sum(1 for status, _ in answers.values() if status == 200)
    if ok != len(texts):
        raise RuntimeError(f"{len(texts) - ok} of {len(texts)} requests failed")
    return len(answers) / (time.perf_counter() - started)


def serve(home: Path, model: str, env: dict, servers: int, texts: list[str]) -> float:
    procs = []
    try:
        for _ in range(servers):
            port = sl.free_port()
            procs.append((sl.start([sys.executable, "-c", "from modelshop.cli import main; main()", "serve",
                                    "--port", str(port)],
                                   {"MODELSHOP_HOME": str(home), "MODELSHOP_ADMIN_KEY": sl.KEY,
                                    "MODELSHOP_SERVE_GATE": "admin", "MODELSHOP_PROGRESS": "false",
                                    "MODELSHOP_DEFAULT_MODEL": model, "TOKENIZERS_PARALLELISM": "false", **env},
                                   port), port))
        ports = [port for _, port in procs]
        run_load(ports, model, texts[:4 * sl.CLIENTS])  # warm-up, not counted
        return run_load(ports, model, texts)
    finally:
        for proc, _ in procs:
            sl.stop(proc)


def bare(home: Path, model: str, texts: list[str], reps: int) -> None:
    """Packed forward without HTTP on batches of 16: one worker with 2 threads against 2 workers with 1."""
    import torch

    from modelshop.inference import load_predictor
    from modelshop.registry import Registry
    from modelshop.settings import Settings

    registry = Registry.from_settings(Settings(home=home, progress=False))
    predictor = load_predictor(registry.path(registry.get(model)))
    enc = predictor.tokenizer(texts, truncation=True, max_length=predictor.max_length)["input_ids"]
    chunks = [[(ids, None) for ids in enc[s:s + 16]] for s in range(0, len(enc), 16)]

    def rate(threads: int, workers: int) -> float:
        torch.set_num_threads(threads)
        predictor.forward_packed(chunks[0])
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(predictor.forward_packed, chunks))
        return len(enc) / (time.perf_counter() - started)

    results = {"1 worker × 2 threads": [], "2 workers × 1 thread": []}
    for _ in range(reps):
        results["1 worker × 2 threads"].append(rate(2, 1))
        results["2 workers × 1 thread"].append(rate(1, 2))
    for label, rates in results.items():
        print(f"{label:24s} {statistics.mean(rates):7.1f} texts/s  ({', '.join(f'{r:.1f}' for r in rates)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="*", help="JSON objects of environment variables, one per configuration")
    p.add_argument("--home", type=Path, required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--requests", type=int, default=None, help="test texts per run (default: all)")
    p.add_argument("--bare", action="store_true", help="measure the packed forward without HTTP instead")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    texts, _ = sl.read(sl.DATA / "test.jsonl", args.requests)
    if args.bare:
        bare(args.home, args.model, texts, args.reps)
        return
    runs = []
    for config in args.configs or ["{}"]:
        env = json.loads(config)
        runs.append((config, env, int(env.pop("servers", 1))))
    rates: dict[str, list[float]] = {label: [] for label, _, _ in runs}
    for rep in range(args.reps):
        for label, env, servers in runs:
            rates[label].append(serve(args.home, args.model, env, servers, texts))
            print(f"round {rep + 1}: {label:60s} {rates[label][-1]:7.1f} req/s", flush=True)
    print(f"\nmeans over {args.reps} rounds of {len(texts)} requests:")
    for label, values in rates.items():
        print(f"{label:60s} {statistics.mean(values):7.1f} req/s  (min {min(values):.1f}, max {max(values):.1f})")


if __name__ == "__main__":
    main()
