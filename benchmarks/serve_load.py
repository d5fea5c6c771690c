"""Serving under load, measured in one run on a minilm fine-tuned on rotten_tomatoes:

    (a) our server (`modelshop serve`, a subprocess: dynamic batching)
    (b) a naive FastAPI server calling `transformers.pipeline` once per request (a subprocess)
    (c) the bare model in this process, no HTTP: the Hugging Face model's padded forward in
        length-sorted batches of 64 (the target's baseline) and in arrival order, batches of 32 (what a
        server can see), and (c'') our packed forward on the same arrival-order batches
and the int8, ONNX and ONNX-int8 forms (`modelshop optimize`): bare texts/s and macro-F1 on the
test texts beside fp32, and optionally each served as in (a).

Load: the test texts, one per request, from 32 concurrent keep-alive connections driven by one
asyncio process speaking raw HTTP/1.1 (light, so it takes little CPU from the server). Loopback
only; every run is bounded in requests and seconds, and the servers are stopped at the end.

    .venv/bin/python benchmarks/serve_load.py                               # full run (~15 min on 2 cores)
    .venv/bin/python benchmarks/serve_load.py --train-rows 300 --requests 200 --eval-rows 400   # short
    .venv/bin/python benchmarks/serve_load.py --home ~/.modelshop --model reviews --no-forms
    .venv/bin/python benchmarks/serve_load.py --home H --model M --gate billing --api-key CUSTOMER_KEY  # metered
    .venv/bin/python benchmarks/serve_load.py --metering --no-naive --no-forms --requests 400   # metering on/off

With `--metering`, (a) is also served with metering off (the admin gate: a key check, nothing
written) and on (the billing gate, a customer key made for the run on a pay-as-you-go plan without
limits, every call written to the usage ledger, durable before the reply) on the same model and
texts, both servers up at once and loaded in alternating rounds (`--metering-rounds`) so background
load touches both alike; the ledger is checked to hold every answered call, and the on/off
throughput ratio is reported.
Targets: (a) ≥ 3 × (b) in throughput, (a) ≥ 0.8 × (c), p99 of (a) ≤ p99 of (b) / 2; int8 and ONNX
forms ≥ 1.5 × fp32 texts/s with ≤ 1 point of macro-F1 lost; metering on ≥ 0.9 × metering off.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "rotten_tomatoes"
KEY = "benchmark-key-0123456789abcdef"
CLIENTS = 32


# --- the load generator ---------------------------------------------------------------------------

async def _connection(port: int, path: str, key: str, bodies: list, latencies: list, answers: dict, deadline: float):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, body in bodies:
            if time.perf_counter() > deadline:
                return
            head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n").encode()
            started = time.perf_counter()
            writer.write(head + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            payload = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            answers[index] = (status, payload)
    finally:
        writer.close()


def load(port: int, path: str, texts: list[str], body_of, *, seconds: float, key: str = KEY) -> dict:
    """Send each text once, from CLIENTS connections; throughput and latency percentiles."""
    bodies = [(i, json.dumps(body_of(t)).encode()) for i, t in enumerate(texts)]
    latencies: list[float] = []
    answers: dict[int, tuple[int, bytes]] = {}

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(_connection(port, path, key, bodies[c::CLIENTS], latencies, answers, deadline)
                               for c in range(CLIENTS)))

    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    lat = sorted(latencies)
    ok = sum(1 for s, _ in answers.values() if s == 200)
    return {"requests": len(answers), "ok": ok, "req_per_s": round(len(answers) / wall, 1),
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99), "answers": answers,
            "latencies": lat}


def _pct(lat: list[float], p: float) -> float | None:
    """The p-th percentile of sorted latencies, in ms."""
    return round(1000 * lat[min(len(lat) - 1, int(p / 100 * len(lat)))], 1) if lat else None


# --- servers --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, port: int, timeout: float = 180) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    proc.kill()
    raise RuntimeError("server did not come up in time")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live descendants (model worker processes) (Linux /proc)."""
    stats: dict[int, tuple[int, float]] = {}  # pid → (parent pid, CPU seconds)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except OSError:
                continue  # it exited meanwhile
    tree, total = {pid}, 0.0
    for p in sorted(stats):  # children have larger pids than their parents here (no pid wrap-around in a run)
        if p in tree or stats[p][0] in tree:
            tree.add(p)
            total += stats[p][1]
    return total


def _stat(pid: int) -> tuple[int, float]:
    """A process's parent pid and its own user + system CPU seconds so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(pid: int) -> float:
    """CPU time of the process itself, not its children."""
    return _stat(pid)[1]


def measured(proc: subprocess.Popen, run) -> dict:
    """`run()`'s figures plus the server's (with its worker processes; and its own process alone) and this
    process's CPU milliseconds per request."""
    server0, main0, client0 = cpu_seconds(proc.pid), own_cpu_seconds(proc.pid), time.process_time()
    result = run()
    n = max(result["requests"], 1)
    result["server_cpu_ms"] = round(1000 * (cpu_seconds(proc.pid) - server0) / n, 2)
    result["server_main_cpu_ms"] = round(1000 * (own_cpu_seconds(proc.pid) - main0) / n, 2)
    result["client_cpu_ms"] = round(1000 * (time.process_time() - client0) / n, 2)
    return result


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def naive_server(model_dir: str, port: int) -> None:
    """(b): the server many first write — one pipeline call per request, in FastAPI's thread pool."""
    import uvicorn
    from fastapi import FastAPI
    from transformers import pipeline

    pipe = pipeline("text-classification", model=model_dir, tokenizer=model_dir, device="cpu")
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(body: dict):
        return pipe(body["inputs"], top_k=None, truncation=True)

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def our_server_metrics(port: int) -> dict:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("modelshop_") and line.split("{")[0].endswith(("_sum", "_count")):
            values[line.split("{")[0]] = values.get(line.split("{")[0], 0.0) + float(line.rsplit(" ", 1)[-1])

    def mean(name: str, scale: float = 1.0) -> float | None:
        count = values.get(f"modelshop_{name}_count", 0)
        return round(scale * values.get(f"modelshop_{name}_sum", 0) / count, 1) if count else None

    return {"batches": int(values.get("modelshop_batch_size_count", 0)), "mean_batch": mean("batch_size"),
            "queue_ms": mean("queue_seconds", 1000), "tokenize_ms": mean("tokenization_seconds", 1000),
            "batch_ms": mean("inference_seconds", 1000)}


def start_ours(home: Path, name: str, gate: str, args) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {"MODELSHOP_HOME": str(home), "MODELSHOP_ADMIN_KEY": KEY, "MODELSHOP_SERVE_GATE": gate,
           "MODELSHOP_PROGRESS": "false", "MODELSHOP_DEFAULT_MODEL": name, "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env["MODELSHOP_TORCH_THREADS"] = str(args.threads)
    if args.database_url:
        env["MODELSHOP_DATABASE_URL"] = args.database_url
    proc = start([sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port", str(port)],
                 env, port)
    return proc, port


def ours_body(text: str) -> dict:
    return {"inputs": text, "truncate": True}


def serve_ours(home: Path, name: str, texts: list[str], args) -> dict:
    proc, port = start_ours(home, name, args.gate, args)
    try:
        path, key = f"/predict?model={name}", args.api_key or KEY
        load(port, path, texts[:CLIENTS], ours_body, seconds=60, key=key)  # warm-up, not counted
        result = measured(proc, lambda: load(port, path, texts, ours_body, seconds=args.seconds, key=key))
        result.update(our_server_metrics(port))
    finally:
        stop(proc)
    return result


def serve_metering(home: Path, name: str, texts: list[str], args, customer_key: str) -> tuple[dict, dict, int]:
    """(a) with metering off (admin gate) and on (billing gate, `customer_key`), in alternating rounds.

    Both servers run for the whole comparison, each idle while the other is loaded, so a change in
    the machine's background load touches both sides alike. Returns (off, on, calls answered 200 by
    the metered server, warm-up included) with req/s over all rounds and latency percentiles.
    """
    path = f"/predict?model={name}"
    sides = {"off": (KEY, "admin"), "on": (customer_key, "billing")}
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    metered = 0
    try:
        for side, (_key, gate) in sides.items():
            procs[side] = start_ours(home, name, gate, args)
        for side, (key, _gate) in sides.items():       # warm-up, not counted (but metered)
            warm = load(procs[side][1], path, texts[:CLIENTS], ours_body, seconds=60, key=key)
            metered += warm["ok"] if side == "on" else 0
        for _ in range(args.metering_rounds):
            for side, (key, _gate) in sides.items():
                proc, port = procs[side]
                started = time.perf_counter()
                r = measured(proc, lambda port=port, key=key: load(port, path, texts, ours_body,
                                                                   seconds=args.seconds, key=key))
                r["wall"] = time.perf_counter() - started
                runs[side].append(r)
                if side == "on":
                    metered += r["ok"]
    finally:
        for proc, _port in procs.values():
            stop(proc)

    def total(rs: list[dict]) -> dict:
        lat = sorted(x for r in rs for x in r["latencies"])
        answers = {(n, i): a for n, r in enumerate(rs) for i, a in r["answers"].items()}
        n = sum(r["requests"] for r in rs)
        return {"requests": n, "ok": sum(r["ok"] for r in rs),
                "req_per_s": round(n / sum(r["wall"] for r in rs), 1),
                "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "p99_ms": _pct(lat, 99),
                "server_cpu_ms": round(sum(r["server_cpu_ms"] * r["requests"] for r in rs) / max(n, 1), 2),
                "client_cpu_ms": round(sum(r["client_cpu_ms"] * r["requests"] for r in rs) / max(n, 1), 2),
                "rounds": [r["req_per_s"] for r in rs], "answers": {i: a for (_, i), a in answers.items()}}

    return total(runs["off"]), total(runs["on"]), metered


def metering_customer(settings) -> tuple[int, str]:
    """A pay-as-you-go customer and key for the metered run (no rate limit or quota: metering alone)."""
    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.db import get_database

    db = get_database(settings)
    create_plan(db, parse_plan({"code": "bench-payg", "currency": "USD",
                                "charges": [{"metric": "tokens", "model": "unit", "unit_price": "0.00001"}]}),
                actor="serve_load")
    customer = create_customer(db, f"serve_load {time.strftime('%Y-%m-%dT%H:%M:%S')}", "bench-payg",
                               actor="serve_load")
    return customer["id"], create_key(db, customer["id"], actor="serve_load")["key"]


def ledger_count(settings, customer_id: int) -> int:
    """Usage events the metered run wrote for its customer."""
    from sqlalchemy import func, select

    from modelshop.billing.tables import UsageEvent
    from modelshop.db import get_database

    with get_database(settings).session() as s:
        return s.scalar(select(func.count()).select_from(UsageEvent).where(UsageEvent.customer_id == customer_id))


def serve_naive(model_dir: Path, texts: list[str], args) -> dict:
    port = free_port()
    proc = start([sys.executable, __file__, "--naive-server", str(model_dir), "--port", str(port)],
                 {"TOKENIZERS_PARALLELISM": "false"}, port)
    try:
        body = lambda t: {"inputs": t}  # noqa: E731
        load(port, "/predict", texts[:CLIENTS], body, seconds=60)
        return measured(proc, lambda: load(port, "/predict", texts, body, seconds=args.seconds))
    finally:
        stop(proc)


# --- the run --------------------------------------------------------------------------------------

def read(path: Path, n: int | None) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()[:n]]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def agreement(answers: dict, labels: list[str]) -> float:
    """Share of answered requests whose top label is the bare model's."""
    same = total = 0
    for i, (status, payload) in answers.items():
        if status == 200:
            top = json.loads(payload)
            top = top[0] if isinstance(top[0], dict) else top[0][0]
            same += top["label"] == labels[i]
            total += 1
    return round(same / total, 4) if total else 0.0


def bare(predictor, texts: list[str]) -> dict:
    """(c): texts/s and CPU ms per text of the model alone, no HTTP: the plain padded forward of the
    Hugging Face model in length-sorted batches of 64 and in arrival order, and our packed forward."""
    out = {}

    def timed(key, run):
        run()  # warm-up: first calls allocate
        started, cpu = time.perf_counter(), time.process_time()
        result = run()
        out[key] = {"req_per_s": round(len(texts) / (time.perf_counter() - started), 1),
                    "server_cpu_ms": round(1000 * (time.process_time() - cpu) / len(texts), 2), "client_cpu_ms": 0}
        return result

    def padded(chunks):
        return [(idx, predictor.forward(predictor.encode([texts[i] for i in idx]))) for idx in chunks]

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    sorted64 = timed("sorted64", lambda: padded([order[s:s + 64] for s in range(0, len(texts), 64)]))
    arrival = [list(range(s, min(s + CLIENTS, len(texts)))) for s in range(0, len(texts), CLIENTS)]
    timed("arrival32", lambda: padded(arrival))
    if getattr(predictor, "packable", False):  # what our server runs: no padding, inputs share rows
        def packed(idx):
            enc = predictor.tokenizer([texts[i] for i in idx], truncation=True, max_length=predictor.max_length)
            return predictor.forward_packed([(ids, None) for ids in enc["input_ids"]])
        timed("packed32", lambda: [packed(idx) for idx in arrival])
    logits = np.zeros((len(texts), len(predictor.labels)), dtype=np.float32)
    for idx, rows in sorted64:
        logits[idx] = rows
    out["labels"] = [predictor.labels[j] for j in logits.argmax(1)]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="modelshop home holding --model (default: a fresh temp home)")
    p.add_argument("--model", help="registered fp32 minilm model to use (default: fine-tune one now)")
    p.add_argument("--train-rows", type=int, default=2000, help="rows to fine-tune the quick model on")
    p.add_argument("--requests", type=int, default=None,
                   help="test texts sent, one per request (default: all 2 439; fewer make the tail, where fewer "
                        "than 32 clients are still sending, a larger share of the run)")
    p.add_argument("--eval-rows", type=int, default=None, help="test rows for the int8/ONNX accuracy (default: all)")
    p.add_argument("--seconds", type=float, default=300, help="cap on each load run")
    p.add_argument("--gate", choices=["admin", "billing"], default="admin",
                   help="admin: key check only, nothing metered; billing: the metering gate of modelshop.billing")
    p.add_argument("--api-key", help="key the clients send to (a) (default: the admin key; with --gate billing "
                                     "pass a customer key, made beforehand in --home, to meter every call)")
    p.add_argument("--metering", action="store_true",
                   help="also serve (a) with metering on (billing gate, a customer key, usage written) and "
                        "report its throughput against metering off (target ≥ 0.9×)")
    p.add_argument("--metering-rounds", type=int, default=3,
                   help="alternating off/on load rounds of --metering, each sending every text once")
    p.add_argument("--database-url", help="database of the home (default: its SQLite file), e.g. PostgreSQL "
                                          "for the metered run")
    p.add_argument("--threads", type=int, help="torch/onnxruntime threads for (a) and (c) (default: every core)")
    p.add_argument("--no-naive", action="store_true", help="skip (b)")
    p.add_argument("--no-forms", action="store_true", help="skip the int8/ONNX forms")
    p.add_argument("--serve-forms", action="store_true", help="also load-test each form served as in (a)")
    p.add_argument("--naive-server", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_server:
        naive_server(args.naive_server, args.port)
        return
    if args.metering and (args.gate != "admin" or args.api_key):
        p.error("--metering compares metering on with off: leave --gate and --api-key at their defaults")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from pydantic import SecretStr

    from modelshop.inference import load_predictor
    from modelshop.registry import Registry
    from modelshop.settings import Settings

    home = args.home or Path(tempfile.mkdtemp(prefix="serve-load-"))
    settings = Settings(home=home, progress=False, admin_key=SecretStr(KEY), torch_threads=args.threads,
                        database_url=args.database_url)
    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(f"note: load average {busy:.1f} before starting: other processes share the CPU, so the figures "
              "will be low and noisy; run it on an idle machine", flush=True)
    registry = Registry.from_settings(settings)
    name = args.model
    if name is None:
        from modelshop.train import TrainConfig, run_training

        name = "rt-minilm"
        print(f"fine-tuning minilm on {args.train_rows} rotten_tomatoes rows (1 epoch) into {home} ...", flush=True)
        run_training(DATA / "train.jsonl", DATA / "test.jsonl", name=name, settings=settings,
                     cfg=TrainConfig(base_model="minilm", epochs=1, limit=args.train_rows, tfidf_baseline=False,
                                     validation_fraction=0.0))
    source = registry.get(name)
    texts, gold = read(DATA / "test.jsonl", args.requests)
    print(f"model {source.ref}; {len(texts)} test texts, one per request, {CLIENTS} concurrent clients", flush=True)

    predictor = load_predictor(registry.path(source), threads=settings.torch_threads)
    c = bare(predictor, texts)
    del predictor
    rows = {"(c) bare, sorted batches of 64": c["sorted64"], "(c') bare, arrival order, batches of 32": c["arrival32"]}
    if "packed32" in c:
        rows["(c'') bare, arrival order, packed, 32"] = c["packed32"]
    a = serve_ours(home, name, texts, args)
    rows["(a) modelshop serve"] = a
    if args.metering:
        customer_id, key = metering_customer(settings)
        off, on, metered = serve_metering(home, name, texts, args, key)
        rows["(a) metering off (admin gate), rounds"] = off
        rows["(a) metering on (billing, ledger), rounds"] = on
    if not args.no_naive:
        rows["(b) FastAPI + pipeline per request"] = serve_naive(registry.path(source), texts, args)
    print(f"\n{'':42s} {'req/s':>8s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}  agree  errors"
          "  CPU ms per request: server / clients")
    for label, r in rows.items():
        errors = r["requests"] - r["ok"] if "ok" in r else ""
        agree = agreement(r["answers"], c["labels"]) if "answers" in r else ""
        cpu = f"{r['server_cpu_ms']} / {r['client_cpu_ms']}" if "server_cpu_ms" in r else ""
        print(f"{label:42s} {r['req_per_s']:8.1f} {r.get('p50_ms') or '':>8} {r.get('p95_ms') or '':>8} "
              f"{r.get('p99_ms') or '':>8}  {agree!s:5s}  {errors!s:6s}  {cpu}")
    print(f"(a) batches: {a['batches']}, mean inputs per batch {a['mean_batch']}, mean forward per batch "
          f"{a['batch_ms']} ms; per input: queued {a['queue_ms']} ms, tokenising (per request) {a['tokenize_ms']} "
          f"ms; server CPU {a['server_cpu_ms']} ms per request, of which the HTTP process "
          f"{a['server_main_cpu_ms']} ms (the rest: its model worker processes)")
    print("targets:")
    print(f"  (a) / (c) = {a['req_per_s'] / c['sorted64']['req_per_s']:.2f} (≥ 0.8)   "
          f"[vs arrival-order batches: {a['req_per_s'] / c['arrival32']['req_per_s']:.2f}"
          + (f"; vs packed: {a['req_per_s'] / c['packed32']['req_per_s']:.2f}" if "packed32" in c else "") + "]")
    if not args.no_naive:
        b = rows["(b) FastAPI + pipeline per request"]
        print(f"  (a) / (b) = {a['req_per_s'] / b['req_per_s']:.2f} (≥ 3)   "
              f"p99 (a) / p99 (b) = {a['p99_ms'] / b['p99_ms']:.2f} (≤ 0.5)")
    if args.metering:
        recorded = ledger_count(settings, customer_id)
        print(f"  metering on / off = {on['req_per_s'] / off['req_per_s']:.2f} (≥ 0.9)   "
              f"[{on['req_per_s']} vs {off['req_per_s']} req/s over {args.metering_rounds} alternating rounds of "
              f"{len(texts)} requests (per round: on {on['rounds']}, off {off['rounds']}); "
              f"p99 {on['p99_ms']} vs {off['p99_ms']} ms; server CPU ms per request {on['server_cpu_ms']} vs "
              f"{off['server_cpu_ms']}; usage events written: {recorded} for {metered} calls answered 200"
              f"{'' if recorded == metered else ' — MISMATCH'}]")
    if not args.no_forms:
        forms(settings, registry, source, name, texts, args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (this run's own processes included)")


def forms(settings, registry, source, name, texts, args) -> None:
    from modelshop.optimize import optimize

    eval_path = DATA / "test.jsonl"
    print(f"\ncompressing {source.ref}; measuring on {args.eval_rows or 'all'} test rows ...", flush=True)
    result = optimize(source.ref, data=eval_path, variants=["int8", "onnx", "onnx-int8"], limit=args.eval_rows,
                      settings=settings)
    s = result["source"]
    print(f"{'form':12s} {'texts/s':>8s} {'×fp32':>6s} {'macro-F1':>9s} {'F1 pts lost':>12s}  target ≥1.5× and ≤1 pt")
    print(f"{'fp32':12s} {s['texts_per_s']:8.1f} {1.0:6.2f} {s['macro_f1']:9.4f} {0.0:12.2f}")
    for v in result["versions"]:
        ok = v["speedup"] >= 1.5 and v["macro_f1_points_lost"] <= 1.0
        print(f"{v['variant']:12s} {v['texts_per_s']:8.1f} {v['speedup']:6.2f} {v['macro_f1']:9.4f} "
              f"{v['macro_f1_points_lost']:12.2f}  {'met' if ok else 'NOT met'}")
    if args.serve_forms:
        try:
            for v in result["versions"]:
                registry.promote(f"{name}:{v['version']}")
                r = serve_ours(settings.home, name, texts, args)
                print(f"served {v['variant']:10s} {r['req_per_s']:8.1f} req/s  p50 {r['p50_ms']} ms  "
                      f"p99 {r['p99_ms']} ms  mean batch {r['mean_batch']}")
        finally:
            registry.promote(source.ref)


if __name__ == "__main__":
    main()
