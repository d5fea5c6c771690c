"""Generative serving under load, measured in one run on SmolLM2-135M-Instruct (fp32, greedy):

    (a) our server (`modelshop serve`, a subprocess: the continuous-batching engine in a process of
        its own), N concurrent streaming clients (`--clients`, default 8 and 16)
    (b) a naive FastAPI server (a subprocess, uvicorn) calling `model.generate()` once per request on
        the same weights, loaded with transformers from the same registry folder; non-streamed, so
        its latency is its time to first token
    (c) the bare model's statically batched `generate` in this process, left-padded, no HTTP, at
        batch size `--batch` (default: the first --clients figure)
and, to tell the engine's cost from the server's, (a0): our engine alone in this process, no HTTP,
the same concurrency as (a) at its first --clients figure. If `llama-cpp-python` is importable, its
server (on the GGUF the registry converted from: Q4_1 weights, not fp32) is a row too.

Every row reads the same short customer-service chats (PROMPTS, the model's chat template) with the
same `max_tokens`, greedy. EOS cannot be ignored, so output tokens are counted, not assumed: from
the usage chunk of each stream, and up to and including the first EOS of `generate`'s rows (as the
engine counts them). Per request: time to first token (TTFT), gaps between streamed tokens (ITL),
whole latency; per row: output tokens per second over its wall time. Clients in this process
(httpx, async, closed loop: each sends its next prompt when its last one is done), loopback only.
Every server is up for the whole run and the rows run in `--rounds` alternating rounds, so a change
in the machine's background load touches each row alike; a row's figures pool its rounds.

    .venv/bin/python benchmarks/llm_load.py                       # full run (~5 min on 2 idle cores)
    .venv/bin/python benchmarks/llm_load.py --quick               # smoke run (16 chats, 32 tokens, 1 round)
    .venv/bin/python benchmarks/llm_load.py --prompts 16 --max-tokens 48 --clients 4,8 --no-naive

The registered model is kept in `--home` (default under the temp folder), so only the first run
spends ~40 s converting the GGUF. Targets: (a)@8 ≥ 3 × (b) in output tokens/s; (a)@8 ≥ 0.8 × (c);
TTFT p50 of (a)@8 ≤ half of (b)'s p50 latency. The same ratios are printed per CPU second too.

On a machine that other jobs share, pass `--threads 1`: torch's OpenMP threads spin-wait for each
other, and with two of them on two busy cores every operator waits for a descheduled thread (here,
at load average ~7: `generate` at 3-7 output tokens/s with 2 threads against 28-46 with 1).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import serve_load as sl  # free_port, stop, cpu_seconds: helpers of the classifier serving benchmark

KEY = sl.KEY
NAME = "smollm2-bench"
SYSTEM = "You are the customer-service assistant of an online shop. Answer briefly and politely."
PROMPTS = [
    "Where is my order? I placed it five days ago and the tracking page has not changed.",
    "How do I return a pair of shoes that are too small?",
    "My package arrived damaged. What should I do?",
    "Can I change the delivery address after I have paid?",
    "I was charged twice for the same order. Can you help?",
    "Do you ship to Canada, and how long does it take?",
    "How can I reset my account password?",
    "The discount code SPRING10 does not work at checkout.",
    "What is your refund policy for electronics?",
    "I received the wrong colour of the jacket I ordered.",
    "Can I cancel my subscription before the next billing date?",
    "How long does a refund take to reach my credit card?",
    "Is it possible to buy a gift card for a friend?",
    "My invoice shows the wrong company name. How can I fix it?",
    "Do you offer a warranty on kitchen appliances?",
    "The app crashes every time I open my order history.",
    "Can I pick up my order in a store instead of having it delivered?",
    "What payment methods do you accept?",
    "One item is missing from my parcel.",
    "How do I unsubscribe from your marketing e-mails?",
    "Can you tell me when the blue sofa will be back in stock?",
    "I want to speak to a human agent, please.",
    "Why was my order cancelled without notice?",
    "Do you price-match if I find the same product cheaper elsewhere?",
    "How do I update the credit card saved in my account?",
    "The courier left my parcel at the wrong house.",
    "Can I exchange a dress for a different size?",
    "Is there a student discount?",
    "My loyalty points have disappeared from my account.",
    "How do I delete my account and my personal data?",
    "Can I order in bulk for my company and get an invoice with VAT?",
    "The product description said waterproof, but my boots leak. What now?",
]


def chats(n: int) -> list[list[dict]]:
    """The first `n` chats (repeating the list when n is larger)."""
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
            for i in range(n)]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """The chat template's token ids, as the server renders them."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def counted(new: list[int], eos: set[int]) -> int:
    """Output tokens of one generated row: up to and including its first EOS (the engine's count)."""
    for i, token in enumerate(new):
        if token in eos:
            return i + 1
    return len(new)


# --- figures --------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of `values`, or None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Tally:
    """One row's requests over every round: per-request results ({index, tokens, ttft, itl, latency,
    text} or {index, error}), wall seconds and CPU seconds of each round, the server's histogram sums."""

    def __init__(self) -> None:
        self.results: list[dict] = []
        self.walls: list[float] = []
        self.rounds: list[float] = []   # output tokens/s of each round
        self.cpu: dict[str, float] = {}
        self.server: dict[str, float] = {}

    def add(self, results: list[dict], wall: float, cpu: dict | None = None, server: dict | None = None) -> float:
        """Take one round in; its output tokens/s."""
        self.results += results
        self.walls.append(wall)
        for bag, more in ((self.cpu, cpu or {}), (self.server, server or {})):
            for k, v in more.items():
                bag[k] = bag.get(k, 0.0) + v
        self.rounds.append(_tokens(results) / wall if wall else 0.0)
        return self.rounds[-1]

    def row(self, reference: dict[int, str] | None) -> dict:
        ok = [r for r in self.results if "error" not in r]
        itl = [gap for r in ok for gap in r["itl"]]
        wall = sum(self.walls)
        return {"requests": len(self.results), "errors": len(self.results) - len(ok), "tokens": _tokens(ok),
                "tok_s": _tokens(ok) / wall if wall else 0.0, "wall_s": wall,
                "rounds_tok_s": [round(t, 1) for t in self.rounds],
                "ttft50": pct([r["ttft"] for r in ok], 50), "ttft99": pct([r["ttft"] for r in ok], 99),
                "itl50": pct(itl, 50), "itl99": pct(itl, 99),
                "lat50": pct([r["latency"] for r in ok], 50), "lat99": pct([r["latency"] for r in ok], 99),
                "same_as_b": None if reference is None else sum(reference.get(r["index"]) == r["text"] for r in ok),
                "cpu": self.cpu, "tok_per_cpu_s": _tokens(ok) / cpu if (cpu := _cpu(self.cpu)) else None,
                "server_ttft_mean": _mean(self.server, TTFT),
                "server_itl_mean": _mean(self.server, ITL),
                "first_error": next((r["error"] for r in self.results if "error" in r), None)}

    def texts(self) -> dict[int, str]:
        return {r["index"]: r["text"] for r in reversed(self.results) if "error" not in r}


def _tokens(results: list[dict]) -> int:
    return sum(r.get("tokens", 0) for r in results)


def _cpu(cpu: dict[str, float]) -> float:
    """CPU seconds a row took: the server's with the clients', or the process's (the HTTP process's
    share is inside the server's)."""
    return cpu.get("server", 0.0) + cpu.get("clients", 0.0) + cpu.get("process", 0.0)


TTFT, ITL = "modelshop_llm_time_to_first_token_seconds", "modelshop_llm_inter_token_latency_seconds"


def _mean(sums: dict[str, float], metric: str) -> float | None:
    n = sums.get(f"{metric}_count", 0)
    return sums.get(f"{metric}_sum", 0) / n if n else None


# --- HTTP clients: streamed for (a) and llama.cpp, whole replies for (b) ---------------------------

async def _streamed(client, url: str, body: dict) -> dict:
    started = time.perf_counter()
    stamps, parts, tokens = [], [], 0
    async with client.stream("POST", url, json=body) as reply:
        if reply.status_code != 200:
            return {"error": f"HTTP {reply.status_code}: {(await reply.aread()).decode()[:300]}"}
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return {"error": str(chunk["error"])[:300]}
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                if choice.get("delta", {}).get("content"):
                    stamps.append(time.perf_counter())
                    parts.append(choice["delta"]["content"])
    done = time.perf_counter()
    if not stamps:
        return {"error": "no token streamed"}
    # the usage chunk's count; a server that sends none (include_usage unsupported): one token per chunk
    return {"tokens": tokens or len(stamps), "ttft": stamps[0] - started,
            "itl": [b - a for a, b in zip(stamps, stamps[1:])], "latency": done - started, "text": "".join(parts)}


async def _whole(client, url: str, body: dict) -> dict:
    started = time.perf_counter()
    reply = await client.post(url, json={**body, "stream": False})
    latency = time.perf_counter() - started
    if reply.status_code != 200:
        return {"error": f"HTTP {reply.status_code}: {reply.text[:300]}"}
    data = reply.json()
    return {"tokens": data["usage"]["completion_tokens"], "ttft": latency, "itl": [], "latency": latency,
            "text": data["choices"][0]["message"]["content"]}


def http_load(port: int, model: str, convs: list[list[dict]], clients: int, max_tokens: int, *,
              stream: bool = True) -> tuple[list[dict], float]:
    """Every chat once, from `clients` closed-loop clients: (per-request results, wall seconds)."""
    import httpx

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    ask = _streamed if stream else _whole

    async def main() -> list[dict]:
        todo: asyncio.Queue = asyncio.Queue()
        for item in enumerate(convs):
            todo.put_nowait(item)
        results: list[dict] = []
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, limits=limits,
                                     timeout=httpx.Timeout(900.0)) as client:
            async def worker() -> None:
                while not todo.empty():
                    index, messages = todo.get_nowait()
                    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                            "stream": True, "stream_options": {"include_usage": True}}
                    try:
                        result = await ask(client, url, body)
                    except httpx.HTTPError as e:
                        result = {"error": f"{type(e).__name__}: {e}"}
                    results.append({**result, "index": index})
            await asyncio.gather(*(worker() for _ in range(clients)))
        return results

    started = time.perf_counter()
    results = asyncio.run(main())
    return results, time.perf_counter() - started


def measured(proc, port: int, model: str, convs, clients: int, max_tokens: int, *, stream: bool = True,
             metrics: bool = False) -> tuple[list[dict], float, dict, dict]:
    """`http_load` with CPU seconds over it: the server's with its children, its own process alone (for
    ours, the HTTP side: the engine is a child) and this process's (the clients); and the change in
    our server's generative histograms when `metrics`."""
    before = metric_sums(port) if metrics else {}
    server0, main0, client0 = sl.cpu_seconds(proc.pid), sl.own_cpu_seconds(proc.pid), time.process_time()
    results, wall = http_load(port, model, convs, clients, max_tokens, stream=stream)
    cpu = {"server": sl.cpu_seconds(proc.pid) - server0, "http": sl.own_cpu_seconds(proc.pid) - main0,
           "clients": time.process_time() - client0}
    after = metric_sums(port) if metrics else {}
    return results, wall, cpu, {k: v - before.get(k, 0.0) for k, v in after.items()}


def metric_sums(port: int) -> dict[str, float]:
    """Sum and count of the server's generative histograms (`/metrics`), over every label."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name.startswith("modelshop_llm_") and name.endswith(("_sum", "_count")):
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[-1])
    return out


# --- the servers: (a) ours, (b) the naive one, llama.cpp's ----------------------------------------

def ensure_model(home: Path, base_model: str) -> Path:
    """The registry folder of NAME's production version in `home`, registering (and promoting) `base_model`
    first unless that version is it."""
    from pydantic import SecretStr

    from modelshop.llm.registry import add_local
    from modelshop.registry import Registry
    from modelshop.settings import Settings

    settings = Settings(home=home, progress=False, admin_key=SecretStr(KEY))
    registry = Registry.from_settings(settings)
    current = next((r for r in registry.production() if r.name == NAME), None)
    if current is None or current.base_model != base_model:
        print(f"registering {base_model} as {NAME} in {home} (converted once; later runs reuse it) ...", flush=True)
        added = add_local(NAME, base_model, settings=settings, registry=registry)
        current = registry.promote(f"{NAME}:{added['version']}")
    return registry.path(current)


def start(cmd: list[str], env: dict, port: int, log: Path, *, health: str = "/health",
          timeout: float = 300) -> subprocess.Popen:
    """A server subprocess (its output to `log`), once `health` answers 200."""
    import httpx

    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{health}", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    sl.stop(proc)
    raise RuntimeError(f"server did not come up in {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def warmed(proc: subprocess.Popen, port: int, convs, clients: int, *, stream: bool, what: str) -> None:
    """A few short requests first (ours loads its engine on the first one): not counted."""
    results, _ = http_load(port, NAME, convs[:clients], clients, 4, stream=stream)
    failed = next((r["error"] for r in results if "error" in r), None)
    if failed:
        sl.stop(proc)
        raise RuntimeError(f"{what} failed its warm-up request: {failed}")


def start_ours(home: Path, convs, args) -> tuple[subprocess.Popen, int]:
    port = sl.free_port()
    env = {"MODELSHOP_HOME": str(home), "MODELSHOP_ADMIN_KEY": KEY, "MODELSHOP_SERVE_GATE": "admin",
           "MODELSHOP_PROGRESS": "false", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    if args.threads:
        env["MODELSHOP_LLM_THREADS"] = str(args.threads)
    proc = start([sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port", str(port)],
                 env, port, home / "llm_load-serve.log")
    warmed(proc, port, convs, max(args.clients), stream=True, what="modelshop serve")
    return proc, port


def start_naive(folder: Path, home: Path, convs, args) -> tuple[subprocess.Popen, int]:
    port = sl.free_port()
    cmd = [sys.executable, __file__, "--naive-server", str(folder), "--port", str(port)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = start(cmd, {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}, port, home / "llm_load-naive.log")
    warmed(proc, port, convs, 1, stream=False, what="the naive server")
    return proc, port


def naive_server(folder: str, port: int, threads: int | None) -> None:
    """(b): the server many first write — `generate()` per request, in FastAPI's thread pool."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    eos = {model.generation_config.eos_token_id} if isinstance(model.generation_config.eos_token_id, int) \
        else set(model.generation_config.eos_token_id)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    def chat(body: dict):
        ids = prompt_ids(tokenizer, body["messages"])
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=body["max_tokens"], do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[0, len(ids):].tolist()
        n = counted(new, eos)
        text = tokenizer.decode(new[:n], skip_special_tokens=True)
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop" if new[n - 1] in eos else "length"}],
                "usage": {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_llama_cpp(base_model: str, home: Path, convs, args) -> tuple[subprocess.Popen, int] | str:
    """llama-cpp-python's OpenAI server on the GGUF (streamed to like ours); or why there is none."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'llama-cpp-python[server]' to add this row)"
    from modelshop.llm.convert import resolve

    source = resolve(base_model)
    if not source.gguf_file:
        return f"{base_model} is not a GGUF model"
    port = sl.free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(source.folder / source.gguf_file),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    if args.threads:
        cmd += ["--n_threads", str(args.threads)]
    try:
        proc = start(cmd, {}, port, home / "llm_load-llama-cpp.log", health="/v1/models")
        warmed(proc, port, convs, 1, stream=True, what="llama.cpp's server")
    except RuntimeError as e:
        return f"its server did not start: {str(e)[-300:]}"
    return proc, port


# --- in this process: (c) batched generate, (a0) our engine alone ---------------------------------

def load_bare(folder: Path):
    """The registry folder's model and tokenizer, loaded with transformers (fp32), its EOS ids and meta."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from modelshop.llm.convert import quiet_transformers

    with quiet_transformers(progress=False):
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    meta = json.loads((folder / "modelshop.json").read_text())
    return model, tokenizer, set(meta["eos_token_ids"]), meta


def bare(model, tokenizer, eos: set[int], prompts: list[list[int]], batch: int,
         max_tokens: int) -> tuple[list[dict], float, dict]:
    """(c): `generate` on left-padded batches of `batch` prompts in order; TTFT from each batch's start."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class Clock(BaseStreamer):  # when each step's tokens come out (the first put is the prompt)
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def put(self, value) -> None:
            self.stamps.append(time.perf_counter())

        def end(self) -> None:
            pass

    def run(group: list[list[int]], new_tokens: int, clock=None) -> list[list[int]]:
        longest = max(map(len, group))
        ids = torch.tensor([[tokenizer.pad_token_id] * (longest - len(g)) + g for g in group])
        mask = torch.tensor([[0] * (longest - len(g)) + [1] * len(g) for g in group])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, streamer=clock)
        return out[:, longest:].tolist()

    run(prompts[:batch], 4)  # warm-up: first calls allocate
    results, started, cpu = [], time.perf_counter(), time.process_time()
    for s in range(0, len(prompts), batch):
        clock, t0 = Clock(), time.perf_counter()
        for offset, new in enumerate(run(prompts[s:s + batch], max_tokens, clock)):
            n = counted(new, eos)
            steps = clock.stamps[1:1 + n]
            results.append({"index": s + offset, "tokens": n, "ttft": steps[0] - t0,
                            "itl": [b - a for a, b in zip(steps, steps[1:])], "latency": steps[-1] - t0,
                            "text": tokenizer.decode(new[:n], skip_special_tokens=True)})
    return results, time.perf_counter() - started, {"process": time.process_time() - cpu}


def engine_alone(model, tokenizer, meta: dict, prompts: list[list[int]], concurrency: int,
                 max_tokens: int) -> tuple[list[dict], float, dict]:
    """(a0): our engine in this process, `concurrency` sequences in flight (the next added as one ends),
    with the server's batch settings."""
    from modelshop.llm.engine import Engine
    from modelshop.llm.sampling import SamplingParams
    from modelshop.settings import Settings

    settings = Settings()
    engine = Engine(model, tokenizer, eos_token_ids=meta["eos_token_ids"], context_length=meta["context_length"],
                    max_batch=settings.llm_max_batch, prefill_budget=settings.llm_prefill_tokens)

    def drive(todo: deque, new_tokens: int) -> list[dict]:
        live: dict[str, dict] = {}
        done: list[dict] = []
        while todo or live:
            while todo and len(live) < concurrency:
                index, ids = todo.popleft()
                live[str(index)] = {"index": index, "added": time.perf_counter(), "stamps": [], "text": ""}
                engine.add(str(index), ids, SamplingParams(max_tokens=new_tokens, temperature=0))
            events = engine.step()
            now = time.perf_counter()
            for e in events:
                seq = live[e.request_id]
                seq["stamps"] += [now] * e.tokens
                seq["text"] += e.text
                if e.finish_reason:
                    del live[e.request_id]
                    stamps = seq["stamps"]
                    done.append({"index": seq["index"], "tokens": e.completion_tokens, "text": seq["text"],
                                 "ttft": stamps[0] - seq["added"], "latency": now - seq["added"],
                                 "itl": [b - a for a, b in zip(stamps, stamps[1:])]})
        return done

    drive(deque(enumerate(prompts[:concurrency])), 4)  # warm-up
    started, cpu = time.perf_counter(), time.process_time()
    results = drive(deque(enumerate(prompts)), max_tokens)
    return results, time.perf_counter() - started, {"process": time.process_time() - cpu}


# --- the run --------------------------------------------------------------------------------------

def ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{1000 * seconds:.0f}"


def report(rows: dict[str, dict]) -> None:
    def sec(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"
    print(f"\n{'':50s} {'out tok/s':>9s} {'TTFT ms p50':>11s} {'p99':>5s} {'ITL ms p50':>10s} {'p99':>5s} "
          f"{'latency s p50':>13s} {'p99':>5s} {'tokens':>6s} {'errors':>6s} {'as (b)':>6s} {'tok/CPU s':>9s}  "
          "CPU s: server (HTTP process) / clients")
    for label, r in rows.items():
        same = "" if r["same_as_b"] is None else f"{r['same_as_b']}/{r['requests'] - r['errors']}"
        cpu = f"{r['cpu']['server']:.1f} ({r['cpu']['http']:.1f}) / {r['cpu']['clients']:.1f}" \
            if "server" in r["cpu"] else f"{r['cpu'].get('process', 0):.1f} (this process)"
        per_cpu = "" if r["tok_per_cpu_s"] is None else f"{r['tok_per_cpu_s']:.1f}"
        print(f"{label:50s} {r['tok_s']:9.1f} {ms(r['ttft50']):>11s} {ms(r['ttft99']):>5s} {ms(r['itl50']):>10s} "
              f"{ms(r['itl99']):>5s} {sec(r['lat50']):>13s} {sec(r['lat99']):>5s} {r['tokens']:6d} {r['errors']:6d} "
              f"{same:>6s} {per_cpu:>9s}  {cpu}")
    for label, r in rows.items():
        notes = [f"output tokens/s per round {r['rounds_tok_s']}"]
        if r["server_ttft_mean"] is not None:
            notes.append(f"the server's own mean TTFT {ms(r['server_ttft_mean'])} ms and ITL "
                         f"{ms(r['server_itl_mean'])} ms (/metrics: admission to token, in its HTTP process)")
        if r["first_error"]:
            notes.append(f"first error: {r['first_error']}")
        print(f"{label}: {'; '.join(notes)}")


def targets(a: dict, b: dict | None, c: dict | None, clients: int) -> dict[str, float]:
    """Print the three target checks; their ratios."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"
    out = {}
    print("targets:")
    if b:
        out["a_over_b"] = ratio = a["tok_s"] / b["tok_s"] if b["tok_s"] else float("inf")
        print(f"  (a)@{clients} / (b) output tokens/s = {ratio:.2f} (≥ 3): {verdict(ratio >= 3)}")
        if a["ttft50"] is not None and b["lat50"]:
            out["ttft_a_over_latency_b"] = half = a["ttft50"] / b["lat50"]
            print(f"  TTFT p50 (a)@{clients} / p50 latency (b) = {ms(a['ttft50'])} / {ms(b['lat50'])} ms = "
                  f"{half:.3f} (≤ 0.5): {verdict(half <= 0.5)}")
    if c:
        out["a_over_c"] = ratio = a["tok_s"] / c["tok_s"] if c["tok_s"] else float("inf")
        print(f"  (a)@{clients} / (c) output tokens/s = {ratio:.2f} (≥ 0.8): {verdict(ratio >= 0.8)}")
    per_cpu = [f"{name} = {a['tok_per_cpu_s'] / other['tok_per_cpu_s']:.2f}" for name, other in
               ((f"(a)@{clients} / (b)", b), (f"(a)@{clients} / (c)", c)) if other and other["tok_per_cpu_s"]]
    if per_cpu and a["tok_per_cpu_s"]:
        print(f"  the same ratios per CPU second (fairer where other processes share the cores): {', '.join(per_cpu)}")
    return out


def measure(args, folder: Path, convs) -> tuple[dict[str, Tally], str | None]:
    """Every row, in `args.rounds` rounds of all rows one after the other (every server up the whole time,
    so a change in the machine's background load touches each row alike); the llama.cpp skip reason."""
    first = args.clients[0]
    label_a = {c: f"(a) modelshop serve, {c} streaming clients" for c in args.clients}
    label_b = f"(b) FastAPI + generate() per request, {args.naive_clients} clients"
    model, tokenizer, eos, meta = load_bare(folder)
    prompts = [prompt_ids(tokenizer, m) for m in convs]
    procs: list[subprocess.Popen] = []
    try:
        runs = {f"(c) bare generate, left-padded batches of {args.batch}":
                lambda: bare(model, tokenizer, eos, prompts, args.batch, args.max_tokens)}
        if not args.no_engine:
            runs[f"(a0) our engine alone, {first} in flight, no HTTP"] = \
                lambda: engine_alone(model, tokenizer, meta, prompts, first, args.max_tokens)
        print("starting modelshop serve ...", flush=True)
        proc, port = start_ours(args.home, convs, args)
        procs.append(proc)
        for c in args.clients:
            runs[label_a[c]] = lambda c=c, proc=proc, port=port: measured(proc, port, NAME, convs, c,
                                                                          args.max_tokens, metrics=True)
        if not args.no_naive:
            print("starting the naive server ...", flush=True)
            proc, port = start_naive(folder, args.home, convs, args)
            procs.append(proc)
            runs[label_b] = lambda proc=proc, port=port: measured(proc, port, NAME, convs, args.naive_clients,
                                                                  args.max_tokens, stream=False)
        llama = start_llama_cpp(args.base_model, args.home, convs, args)
        if not isinstance(llama, str):
            procs.append(llama[0])
            runs[f"llama-cpp-python server (its GGUF), {first} streaming clients"] = \
                lambda proc=llama[0], port=llama[1]: measured(proc, port, NAME, convs, first, args.max_tokens)
            llama = None
        tallies = {label: Tally() for label in runs}
        for n in range(args.rounds):
            for label, run in runs.items():
                tok_s = tallies[label].add(*run())
                print(f"  round {n + 1}/{args.rounds}: {label}: {tok_s:.1f} output tokens/s", flush=True)
        return tallies, llama
    finally:
        for proc in procs:
            sl.stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, default=Path(tempfile.gettempdir()) / "modelshop-llm-load",
                   help="modelshop home the model is registered in once and reused from (default: %(default)s)")
    p.add_argument("--base-model", default="smollm2", help="what to register (smollm2, a .gguf, a HF folder)")
    p.add_argument("--prompts", type=int, default=None, help="chats sent per row and round (default 32; "
                                                             "16 with --quick)")
    p.add_argument("--max-tokens", type=int, default=None, help="max_tokens of every request (default 64; 32 quick)")
    p.add_argument("--clients", default="8,16", help="concurrent streaming clients of (a), comma-separated; the "
                                                     "first is the one the targets compare")
    p.add_argument("--naive-clients", type=int, default=None, help="concurrent clients of (b) (default: the "
                                                                   "first --clients)")
    p.add_argument("--batch", type=int, default=None, help="batch size of (c) (default: the first --clients)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of every row, alternated (default 2; 1 quick)")
    p.add_argument("--threads", type=int, help="torch threads of every row (default: each side's own, all cores)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 16 chats, max_tokens 32, one round")
    p.add_argument("--no-naive", action="store_true", help="skip (b), the slowest row")
    p.add_argument("--no-engine", action="store_true", help="skip (a0), the engine alone")
    p.add_argument("--json", type=Path, help="also write the rows and targets to this JSON file")
    p.add_argument("--naive-server", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.naive_server:
        naive_server(args.naive_server, args.port, args.threads)
        return
    args.clients = [int(c) for c in args.clients.split(",") if c.strip().isdigit()]
    if not args.clients or min(args.clients) < 1:
        p.error("--clients takes positive counts separated by commas, e.g. 8,16")
    args.prompts = args.prompts or (16 if args.quick else 32)
    args.max_tokens = args.max_tokens or (32 if args.quick else 64)
    args.rounds = args.rounds or (1 if args.quick else 2)
    args.naive_clients = args.naive_clients or args.clients[0]
    args.batch = args.batch or args.clients[0]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(f"note: load average {busy:.1f} before starting: other processes share the CPU, so the figures "
              "will be low and noisy; run it on an idle machine", flush=True)
    folder = ensure_model(args.home, args.base_model)
    convs = chats(args.prompts)
    print(f"model {NAME} ({args.base_model}, fp32) from {folder}; {len(convs)} chats, max_tokens {args.max_tokens}, "
          f"greedy; {args.rounds} rounds; {os.cpu_count()} cores", flush=True)
    tallies, llama = measure(args, folder, convs)
    label_b = f"(b) FastAPI + generate() per request, {args.naive_clients} clients"
    reference = tallies[label_b].texts() if label_b in tallies else None
    rows = {label: t.row(reference) for label, t in tallies.items()}
    report(rows)
    if llama:
        print(f"llama.cpp row skipped: {llama}")
    first = args.clients[0]
    ratios = targets(rows[f"(a) modelshop serve, {first} streaming clients"], rows.get(label_b),
                     rows[f"(c) bare generate, left-padded batches of {args.batch}"], first)
    print("ITL of (a) and llama.cpp: gaps between streamed chunks at the client; of (a0) and (c): between the "
          "steps that gave a sequence its tokens; (b) streams nothing. 'as (b)': replies equal to (b)'s, which is "
          "generate() alone.")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (this run's own processes included)")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "targets": ratios, "prompts": len(convs),
                                         "max_tokens": args.max_tokens, "rounds": args.rounds}, indent=1))


if __name__ == "__main__":
    main()
