"""The gateway under load, measured in one run against one fast stand-in provider (fast_provider.py):

    (a) our gateway: `modelshop serve` with metering on (the billing gate, a customer key on a plan
        priced per input and output token), the stand-in registered as an upstream model
    (b) LiteLLM's proxy (`litellm --config … --host 127.0.0.1`, a master key, no database), installed by
        this script into a virtual environment of its own (cached: later runs skip the install),
        forwarding to the same stand-in as `openai/…` with its api_base
    (c) direct calls to the stand-in
each with plain and streamed (`stream: true`, `stream_options.include_usage`) chat completions.

Every server is a process of its own (the stand-in under uvicorn with uvloop and httptools), all up
for the whole run; rows are measured one after the other in rounds (`--rounds`), so a change in the
machine's background load touches each alike. The load: `--clients` concurrent keep-alive
connections (32), closed loop, spread over `--client-procs` processes that speak raw HTTP/1.1 on
uvloop (light, so the clients take little CPU from the servers; each process's CPU is printed, to
show whether the clients were the limit). A reply counts only if it is whole and right: the
stand-in's text, its usage, and for a stream every chunk and `[DONE]`.

The ledger: every call (a) answered 200 (warm-up included) must be in `billing_usage_events` exactly
once, under its `x-request-id`, with the provider's token counts (not estimated); read from the
gateway's database (SQLite in the run's fresh home, or `--database-url`).

    .venv/bin/python benchmarks/gateway_load.py                     # full run (~4 min on 2 busy cores)
    .venv/bin/python benchmarks/gateway_load.py --quick --skip-litellm   # smoke run (~15 s)
    .venv/bin/python benchmarks/gateway_load.py --requests 1000 --clients 32 --client-procs 2

Targets (issue 14), at 32 clients, plain and streamed: (a) ≥ 5 × (b) in requests/s; (a)'s added p50
latency over (c) ≤ a fifth of (b)'s; every call in the ledger exactly once. The issue's reference,
measured here with LiteLLM 1.108.7, plain calls: direct 1,696 req/s (p50 15 ms), LiteLLM 39 req/s
(p50 814 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import fast_provider as fp
import serve_load as sl  # free_port, stop, cpu_seconds: helpers of the classifier serving benchmark

LITELLM_VERSION = "1.108.7"
LITELLM_VENV = Path.home() / ".cache" / "modelshop-bench" / "litellm-venv"
ADMIN_KEY = "benchmark-admin-key-0123456789abcdef"
LITELLM_KEY = "sk-litellm-master-0123456789abcdef"
PROVIDER_KEY = "sk-standin-0123456789abcdef"
PROVIDER_ENV = "BENCH_PROVIDER_KEY"
NAME = "bench"                        # the model's name at the gateway and at LiteLLM
EXPECTED = "".join(f"w{i} " for i in range(fp.WORDS))
MESSAGES = [{"role": "user", "content": "Where is my parcel? I ordered it five days ago."}]
MAX_TOKENS = 16
PLAN = {"code": "bench-tokens", "currency": "USD", "charges": [
    {"metric": "input_tokens", "model": "unit", "unit_price": "0.000001"},
    {"metric": "output_tokens", "model": "unit", "unit_price": "0.000002"}]}
MODES = ("plain", "stream")


# --- the load generator: raw HTTP/1.1 on uvloop, in client processes ------------------------------

async def _head(reader) -> tuple[int, dict[str, str]]:
    line = await reader.readline()
    if not line:
        raise ConnectionError("the server closed the connection")
    status = int(line.split()[1])
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


async def _pieces(reader, headers: dict[str, str]):
    """The body as it arrives: one piece per HTTP chunk (or the whole body when it has a length)."""
    if "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass   # trailers
                return
            yield (await reader.readexactly(size + 2))[:-2]
    else:
        yield await reader.read()


def _check_plain(body: bytes) -> str | None:
    """Why a plain reply is not the stand-in's answer, or None when it is."""
    data = json.loads(body)
    if data["choices"][0]["message"]["content"] != EXPECTED:
        return f"wrong text: {data['choices'][0]['message']['content']!r}"
    usage = data.get("usage") or {}
    if (usage.get("prompt_tokens"), usage.get("completion_tokens")) != (fp.PROMPT_TOKENS, fp.WORDS):
        return f"wrong usage: {usage}"
    return None


async def _stream(reader, headers, started: float) -> tuple[float | None, str | None]:
    """Read a streamed reply: (seconds to its first token, why it is wrong or None)."""
    buffer, text, usage, done, first = b"", [], None, False, None
    async for piece in _pieces(reader, headers):
        buffer += piece.replace(b"\r\n", b"\n")
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data:"):
                continue
            data = event[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            if chunk.get("usage"):
                usage = chunk["usage"]
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    if first is None:
                        first = time.perf_counter() - started
                    text.append(content)
    if not done:
        return first, "no [DONE]"
    if "".join(text) != EXPECTED:
        return first, f"wrong text: {''.join(text)!r}"
    if (usage or {}).get("prompt_tokens") != fp.PROMPT_TOKENS or (usage or {}).get("completion_tokens") != fp.WORDS:
        return first, f"wrong usage: {usage}"
    return first, None


async def _connection(job: dict, left: list[int], out: dict) -> None:
    request = job["request"].encode("latin-1")
    reader = writer = None
    while left[0] > 0:
        left[0] -= 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", job["port"])
            started = time.perf_counter()
            writer.write(request)
            status, headers = await _head(reader)
            if status != 200:
                body = b"".join([p async for p in _pieces(reader, headers)])
                raise ValueError(f"HTTP {status}: {body[:200].decode(errors='replace')}")
            if job["stream"]:
                ttft, wrong = await _stream(reader, headers, started)
            else:
                ttft, wrong = None, _check_plain(b"".join([p async for p in _pieces(reader, headers)]))
            latency = time.perf_counter() - started
            if wrong:
                out["wrong"] += 1
                out["first_error"] = out["first_error"] or f"200 but {wrong}"
            else:
                out["latencies"].append(latency)
                if ttft is not None:
                    out["ttfts"].append(ttft)
                if job["ids"]:
                    out["ids"].append(headers.get("x-request-id"))
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        except (OSError, ValueError, asyncio.IncompleteReadError) as e:
            out["errors"] += 1
            out["first_error"] = out["first_error"] or f"{type(e).__name__}: {e}"[:300]
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


def run_job(job: dict) -> dict:
    """`job["requests"]` requests over `job["connections"]` connections of this process: its results."""
    out = {"latencies": [], "ttfts": [], "ids": [], "wrong": 0, "errors": 0, "first_error": None}
    left = [job["requests"]]

    async def main() -> None:
        await asyncio.gather(*(_connection(job, left, out) for _ in range(job["connections"])))

    cpu0, out["start"] = time.process_time(), time.perf_counter()
    _loop_runner()(main())
    out["end"], out["cpu"] = time.perf_counter(), time.process_time() - cpu0
    return out


def _loop_runner():
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def _client_process(conn) -> None:
    while (job := conn.recv()) is not None:
        conn.send(run_job(job))


class Clients:
    """`procs` client processes (spawned once, reused for every row); `run` spreads one row's connections
    and requests over them and merges what they measured."""

    def __init__(self, procs: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for _ in range(procs):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(target=_client_process, args=(theirs,), daemon=True)
            proc.start()
            self.pipes.append(mine)
            self.procs.append(proc)

    def run(self, port: int, request: str, *, stream: bool, clients: int, requests: int, ids: bool = False) -> dict:
        n = len(self.pipes)
        shares = [(clients // n + (i < clients % n), requests // n + (i < requests % n)) for i in range(n)]
        busy = [(pipe, c, r) for pipe, (c, r) in zip(self.pipes, shares) if c and r]
        for pipe, c, r in busy:
            pipe.send({"port": port, "request": request, "stream": stream, "connections": c, "requests": r,
                       "ids": ids})
        parts = [pipe.recv() for pipe, _, _ in busy]
        wall = max(p["end"] for p in parts) - min(p["start"] for p in parts)
        return {"latencies": sorted(x for p in parts for x in p["latencies"]),
                "ttfts": sorted(x for p in parts for x in p["ttfts"]), "ids": [i for p in parts for i in p["ids"]],
                "wrong": sum(p["wrong"] for p in parts), "errors": sum(p["errors"] for p in parts),
                "first_error": next((p["first_error"] for p in parts if p["first_error"]), None), "wall": wall,
                "client_cpu": sum(p["cpu"] for p in parts),
                "client_busiest": max(p["cpu"] / max(p["end"] - p["start"], 1e-9) for p in parts)}

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(5)


def http_request(port: int, key: str | None, body: dict) -> str:
    """One keep-alive POST /v1/chat/completions, as the text sent on the wire."""
    payload = json.dumps(body, separators=(",", ":"))
    auth = f"Authorization: Bearer {key}\r\n" if key else ""
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(payload.encode())}\r\n\r\n{payload}")


def body(model: str, mode: str) -> dict:
    out = {"model": model, "messages": MESSAGES, "max_tokens": MAX_TOKENS}
    if mode == "stream":
        out.update(stream=True, stream_options={"include_usage": True})
    return out


# --- the servers ----------------------------------------------------------------------------------

def wait_up(proc: subprocess.Popen, port: int, path: str, log: Path, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{log.name}: the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    sl.stop(proc)
    raise RuntimeError(f"{log.name}: no answer on {path} in {timeout:.0f} s: {log.read_text(errors='replace')[-2000:]}")


def launch(cmd: list[str], env: dict[str, str], port: int, health: str, log: Path,
           timeout: float = 180) -> subprocess.Popen:
    """A server subprocess (its output to `log`), once `health` answers 200."""
    started = time.perf_counter()
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    wait_up(proc, port, health, log, timeout)
    print(f"  {log.stem} up in {time.perf_counter() - started:.1f} s (its output: {log})", flush=True)
    return proc


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any modelshop or database setting, plus `extra`."""
    drop = ("MODELSHOP_", "DATABASE_URL", "LITELLM_", "OPENAI_")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(drop)}, **extra}


def start_provider(home: Path) -> tuple[subprocess.Popen, int]:
    port = sl.free_port()
    proc = launch([sys.executable, str(Path(__file__).with_name("fast_provider.py")), "--port", str(port)],
                  clean_env(), port, "/health", home / "provider.log", timeout=60)
    return proc, port


def setup_gateway(home: Path, provider_port: int, database_url: str | None) -> tuple[int, str, str]:
    """A fresh home: the stand-in as upstream model NAME, a token-priced plan, a customer and its key:
    (customer id, key, database URL)."""
    from pydantic import SecretStr

    from modelshop.billing.accounts import create_customer, create_plan
    from modelshop.billing.keys import create_key
    from modelshop.billing.plans import parse_plan
    from modelshop.db import get_database
    from modelshop.llm.upstream import add_upstream
    from modelshop.settings import Settings

    settings = Settings(home=home, progress=False, admin_key=SecretStr(ADMIN_KEY), serve_gate="billing",
                        database_url=database_url)
    add_upstream(NAME, f"http://127.0.0.1:{provider_port}/v1", fp.MODEL, key_env=PROVIDER_ENV,
                 cost_input="0.10", cost_output="0.20", settings=settings)
    db = get_database(settings)
    db.migrate()
    create_plan(db, parse_plan(PLAN), actor="gateway_load")
    customer = create_customer(db, f"gateway_load {time.strftime('%Y-%m-%dT%H:%M:%S')}", PLAN["code"],
                               actor="gateway_load")["id"]
    return customer, create_key(db, customer, actor="gateway_load")["key"], settings.sqlalchemy_url


def start_gateway(home: Path, database_url: str) -> tuple[subprocess.Popen, int]:
    port = sl.free_port()
    env = clean_env(MODELSHOP_HOME=str(home), MODELSHOP_DATABASE_URL=database_url, MODELSHOP_SERVE_GATE="billing",
                    MODELSHOP_ADMIN_KEY=ADMIN_KEY, MODELSHOP_PROGRESS="false", TOKENIZERS_PARALLELISM="false",
                    HF_HUB_OFFLINE="1", **{PROVIDER_ENV: PROVIDER_KEY})
    proc = launch([sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port", str(port)],
                  env, port, "/health", home / "gateway.log")
    return proc, port


def litellm_venv(version: str = LITELLM_VERSION, venv: Path = LITELLM_VENV) -> tuple[Path, str]:
    """The `litellm` command of a virtual environment holding `litellm[proxy]==version` (or, when PyPI has
    no such version, the latest), made on the first run and reused after: (command, version installed)."""
    stamp = venv / "modelshop-bench-installed.txt"
    command = venv / "bin" / "litellm"
    if stamp.exists() and command.exists():
        return command, stamp.read_text().strip()
    print(f"installing litellm[proxy]=={version} into {venv} (once; later runs reuse it) ...", flush=True)
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if subprocess.run(pip + [f"litellm[proxy]=={version}"]).returncode != 0:
        print(f"litellm {version} could not be installed; taking the latest", flush=True)
        subprocess.run(pip + ["litellm[proxy]"], check=True)
    got = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    stamp.write_text(got + "\n")
    return command, got


def start_litellm(home: Path, provider_port: int) -> tuple[subprocess.Popen, int, str]:
    command, version = litellm_venv()
    config = home / "litellm.yaml"
    # YAML is a superset of JSON: the config written as JSON needs no YAML library here
    config.write_text(json.dumps({
        "model_list": [{"model_name": NAME, "litellm_params": {
            "model": f"openai/{fp.MODEL}", "api_base": f"http://127.0.0.1:{provider_port}/v1",
            "api_key": f"os.environ/{PROVIDER_ENV}"}}],
        "general_settings": {"master_key": LITELLM_KEY}}, indent=1))
    port = sl.free_port()
    # no database (no DATABASE_URL); the price map bundled with the package, as the machine has no internet
    env = clean_env(LITELLM_LOCAL_MODEL_COST_MAP="True", **{PROVIDER_ENV: PROVIDER_KEY})
    proc = launch([str(command), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)], env, port,
                  "/health/liveliness", home / "litellm.log", timeout=300)
    return proc, port, version


# --- figures --------------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float | None:
    """The p-th percentile (nearest rank) of sorted `values`, in ms."""
    return 1000 * values[min(len(values) - 1, int(p / 100 * len(values)))] if values else None


class Row:
    """One target in one mode, over every round."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.ok = self.wrong = self.errors = 0
        self.wall = self.client_cpu = self.server_cpu = self.provider_cpu = 0.0
        self.client_busiest = 0.0
        self.rounds: list[float] = []
        self.first_error: str | None = None

    def add(self, r: dict, server_cpu: float, provider_cpu: float) -> float:
        ok = len(r["latencies"])
        self.latencies = sorted(self.latencies + r["latencies"])
        self.ttfts = sorted(self.ttfts + r["ttfts"])
        self.ok += ok
        self.wrong += r["wrong"]
        self.errors += r["errors"]
        self.wall += r["wall"]
        self.client_cpu += r["client_cpu"]
        self.server_cpu += server_cpu
        self.provider_cpu += provider_cpu
        self.client_busiest = max(self.client_busiest, r["client_busiest"])
        self.first_error = self.first_error or r["first_error"]
        self.rounds.append(ok / r["wall"] if r["wall"] else 0.0)
        return self.rounds[-1]

    @property
    def rps(self) -> float:
        return self.ok / self.wall if self.wall else 0.0

    def figures(self) -> dict:
        n = max(self.ok + self.wrong + self.errors, 1)
        return {"ok": self.ok, "wrong": self.wrong, "errors": self.errors, "req_s": round(self.rps, 1),
                "rounds_req_s": [round(x, 1) for x in self.rounds],
                "p50_ms": pct(self.latencies, 50), "p99_ms": pct(self.latencies, 99),
                "ttft_p50_ms": pct(self.ttfts, 50),
                "cpu_ms_per_request": {"server": 1000 * self.server_cpu / n, "provider": 1000 * self.provider_cpu / n,
                                       "clients": 1000 * self.client_cpu / n},
                "client_busiest": round(self.client_busiest, 2), "first_error": self.first_error}


def ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def minus(a: float | None, b: float | None) -> float | None:
    """a − b, or None when a row had no answer to take a percentile of."""
    return None if a is None or b is None else a - b


def report(rows: dict[tuple[str, str], Row], direct: str) -> None:
    print(f"\n{'':44s} {'mode':6s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'+p50':>7s} {'+p99':>7s} "
          f"{'TTFT50':>7s} {'ok':>6s} {'bad':>4s}  CPU ms/request: server / provider / clients")
    for (label, mode), row in rows.items():
        f = row.figures()
        base = rows[(direct, mode)].figures()
        added50 = None if label == direct else minus(f["p50_ms"], base["p50_ms"])
        added99 = None if label == direct else minus(f["p99_ms"], base["p99_ms"])
        cpu = f["cpu_ms_per_request"]
        server = "" if label == direct else f"{cpu['server']:.2f}"
        print(f"{label:44s} {mode:6s} {f['req_s']:7.1f} {ms(f['p50_ms']):>7s} {ms(f['p99_ms']):>7s} {ms(added50):>7s} "
              f"{ms(added99):>7s} {ms(f['ttft_p50_ms']):>7s} {f['ok']:6d} {f['wrong'] + f['errors']:4d}  "
              f"{server:>6s} / {cpu['provider']:.2f} / {cpu['clients']:.2f}")
    for (label, mode), row in rows.items():
        f = row.figures()
        notes = [f"req/s per round {f['rounds_req_s']}", f"busiest client process {100 * f['client_busiest']:.0f} % "
                 "of a core"]
        if f["client_busiest"] > 0.9:
            notes.append("the clients were near a full core: this row may be client-bound (raise --client-procs)")
        if f["first_error"]:
            notes.append(f"first error: {f['first_error']}")
        print(f"  {label}, {mode}: {'; '.join(notes)}")


def targets(rows: dict[tuple[str, str], Row], a: str, b: str | None, c: str, ledger: dict) -> dict:
    """Print the issue's target checks; their figures."""
    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"
    out: dict = {}
    print("targets (issue 14):")
    for mode in MODES:
        fa, fc = rows[(a, mode)].figures(), rows[(c, mode)].figures()
        if b is not None:
            fb = rows[(b, mode)].figures()
            ratio = fa["req_s"] / fb["req_s"] if fb["req_s"] else float("inf")
            added_a, added_b = minus(fa["p50_ms"], fc["p50_ms"]), minus(fb["p50_ms"], fc["p50_ms"])
            share = float("inf") if added_a is None or not added_b or added_b <= 0 else added_a / added_b
            out[mode] = {"a_over_b": round(ratio, 2), "added_p50_a_ms": added_a, "added_p50_b_ms": added_b,
                         "added_p50_a_over_b": round(share, 3)}
            print(f"  {mode}: (a) / (b) requests/s = {fa['req_s']:.1f} / {fb['req_s']:.1f} = {ratio:.2f} (≥ 5): "
                  f"{verdict(ratio >= 5)}")
            print(f"  {mode}: added p50 (a) / (b) = {ms(added_a)} / {ms(added_b)} ms = {share:.3f} (≤ 0.2): "
                  f"{verdict(share <= 0.2)}")
        out.setdefault(mode, {})["a_over_c"] = round(fa["req_s"] / fc["req_s"], 3) if fc["req_s"] else None
    exact = ledger["exactly_once"]
    print(f"  ledger: {ledger['rows']} usage events for {ledger['answered']} calls (a) answered 200 "
          f"(warm-up included); missing {ledger['missing']}, twice or more {ledger['duplicates']}, unknown "
          f"{ledger['unknown']}, not the provider's usage {ledger['wrong_usage']}: "
          f"{'every call exactly once' if exact else 'NOT exactly once'}")
    out["ledger"] = ledger
    return out


def ledger_check(database_url: str, customer: int, answered: list[str]) -> dict:
    """The customer's usage events against the request ids of the calls answered 200."""
    from sqlalchemy import select

    from modelshop.billing.tables import UsageEvent
    from modelshop.db import Database

    with Database(database_url).session() as s:
        events = s.execute(select(UsageEvent.request_id, UsageEvent.input_tokens, UsageEvent.output_tokens,
                                  UsageEvent.estimated).where(UsageEvent.customer_id == customer)).all()
    seen = Counter(e.request_id for e in events)
    wanted = set(answered)
    result = {"rows": len(events), "answered": len(answered), "missing": len(wanted - set(seen)),
              "duplicates": sum(1 for n in seen.values() if n > 1) + (len(answered) - len(wanted)),
              "unknown": len(set(seen) - wanted),
              "wrong_usage": sum(1 for e in events
                                 if (e.input_tokens, e.output_tokens, bool(e.estimated)) !=
                                 (fp.PROMPT_TOKENS, fp.WORDS, False))}
    result["exactly_once"] = (result["missing"] == result["duplicates"] == result["unknown"] == 0
                              and result["rows"] == result["answered"])
    return result


# --- the run --------------------------------------------------------------------------------------

def measure(args, home: Path) -> tuple[dict[tuple[str, str], Row], dict, dict]:
    """Start every server, warm each up, run the rounds; (rows, ledger check, what ran)."""
    procs: list[subprocess.Popen] = []
    clients = Clients(args.client_procs)
    try:
        provider, provider_port = start_provider(home)
        procs.append(provider)
        customer, key, database_url = setup_gateway(home, provider_port, args.database_url)
        print("starting modelshop serve ...", flush=True)
        gateway, gateway_port = start_gateway(home, database_url)
        procs.append(gateway)
        c = "(c) direct to the stand-in"
        a = "(a) modelshop gateway, metering on"
        targets_ = {c: (provider, provider_port, None, fp.MODEL, args.requests),
                    a: (gateway, gateway_port, key, NAME, args.requests)}
        b = None
        info = {"database": database_url.split(":", 1)[0], "home": str(home)}
        if not args.skip_litellm:
            print("starting LiteLLM's proxy ...", flush=True)
            litellm, litellm_port, version = start_litellm(home, provider_port)
            procs.append(litellm)
            b = f"(b) LiteLLM proxy {version}"
            info["litellm"] = version
            targets_[b] = (litellm, litellm_port, LITELLM_KEY, NAME, args.litellm_requests)
        answered: list[str] = []
        for label, (_, port, auth, model, _) in targets_.items():   # warm-up, not counted (but metered)
            for mode in MODES:
                r = clients.run(port, http_request(port, auth, body(model, mode)), stream=mode == "stream",
                                clients=args.clients, requests=args.clients * (1 if args.quick else 2),
                                ids=label == a)
                if r["errors"] or r["wrong"]:
                    raise RuntimeError(f"{label} failed its warm-up ({mode}): {r['first_error']}")
                answered += r["ids"]
        rows = {(label, mode): Row(label) for mode in MODES for label in targets_}
        for n in range(args.rounds):
            for mode in MODES:
                for label, (proc, port, auth, model, requests) in targets_.items():
                    server0, provider0 = sl.cpu_seconds(proc.pid), sl.cpu_seconds(provider.pid)
                    r = clients.run(port, http_request(port, auth, body(model, mode)), stream=mode == "stream",
                                    clients=args.clients, requests=requests, ids=label == a)
                    server_cpu = sl.cpu_seconds(proc.pid) - server0
                    provider_cpu = sl.cpu_seconds(provider.pid) - provider0
                    answered += r["ids"]
                    rps = rows[(label, mode)].add(r, server_cpu, provider_cpu)
                    print(f"  round {n + 1}/{args.rounds}, {mode:6s}: {label}: {rps:.1f} req/s, p50 "
                          f"{ms(pct(r['latencies'], 50))} ms ({len(r['latencies'])} ok, "
                          f"{r['wrong'] + r['errors']} bad)", flush=True)
        ledger = ledger_check(database_url, customer, answered)
        info.update(a=a, b=b, c=c)
        return rows, ledger, info
    finally:
        clients.close()
        for proc in reversed(procs):
            sl.stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=None,
                   help="requests per row, mode and round for (a) and (c) (default 3000; 200 with --quick)")
    p.add_argument("--litellm-requests", type=int, default=None,
                   help="requests per mode and round for (b), the slow one (default 600; 100 with --quick)")
    p.add_argument("--clients", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--client-procs", type=int, default=2,
                   help="processes the connections are spread over (default 2)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of every row (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true", help="a smoke run: few requests, one round")
    p.add_argument("--skip-litellm", action="store_true", help="no (b): no install, no LiteLLM proxy")
    p.add_argument("--database-url", help="the gateway's database (default: SQLite in the run's fresh home)")
    p.add_argument("--home", type=Path, help="the run's modelshop home (default: a new temporary folder)")
    p.add_argument("--json", type=Path, help="also write the figures and target checks to this JSON file")
    args = p.parse_args()
    args.requests = args.requests or (200 if args.quick else 3000)
    args.litellm_requests = args.litellm_requests or (100 if args.quick else 600)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if min(args.requests, args.litellm_requests, args.clients, args.client_procs, args.rounds) < 1:
        p.error("--requests, --litellm-requests, --clients, --client-procs and --rounds must be at least 1")
    home = args.home or Path(tempfile.mkdtemp(prefix="modelshop-gateway-load-"))
    home.mkdir(parents=True, exist_ok=True)
    busy = os.getloadavg()[0]
    if busy > 0.5:
        print(f"note: load average {busy:.1f} before starting: other processes share the CPU, so the figures "
              "will be low and noisy; run it on an idle machine", flush=True)
    print(f"home {home}; {args.clients} clients over {args.client_procs} client processes; {args.rounds} rounds; "
          f"{os.cpu_count()} cores", flush=True)
    rows, ledger, info = measure(args, home)
    report(rows, info["c"])
    print("+p50/+p99: added over (c), the direct calls. TTFT50: p50 time to the first token of a stream. "
          "CPU ms/request: the server's process tree, the stand-in's, and the client processes'.")
    checks = targets(rows, info["a"], info["b"], info["c"], ledger)
    print(f"ledger read from the gateway's {info['database']} database; load average at the end: "
          f"{os.getloadavg()[0]:.1f} (this run's own processes included)")
    if args.json:
        args.json.write_text(json.dumps({"rows": {f"{label} {mode}": row.figures()
                                                  for (label, mode), row in rows.items()},
                                         "targets": checks, "info": info, "clients": args.clients,
                                         "client_procs": args.client_procs, "rounds": args.rounds}, indent=1))


if __name__ == "__main__":
    main()
