"""What `modelshop serve` costs in memory with its model workers in processes of their own.

For each worker count N (`--workers 1,2,4`) a server is started with `MODELSHOP_SERVE_WORKERS=N` and
`MODELSHOP_SERVE_PROCESSES=true`, sent `--requests` texts (so each worker has run batches and holds
its working buffers), and every process of its tree is read from /proc/PID/smaps_rollup:

    USS  private memory (Private_Clean + Private_Dirty): what stopping that process alone gives back
    PSS  USS plus its share of pages shared with others (the fork server's torch, copy-on-write)
    RSS  every page it maps; shared pages are counted once per process, so RSS overstates a tree

The tree is the server (HTTP, batcher and an in-process copy of the model, the fallback), the
fork server the workers start from (it imported torch and transformers once), each worker, and
multiprocessing's resource tracker. The baseline, measured in the same run, is the same server with
the model on threads (`MODELSHOP_SERVE_PROCESSES=false`, `--workers` of the last N): the sum of PSS
over the tree is what the machine pays for each layout.

    .venv/bin/python benchmarks/serve_memory.py                            # the demo's data, minilm, N = 1, 2, 4
    .venv/bin/python benchmarks/serve_memory.py --home ~/.modelshop --model support-intent --workers 2
    .venv/bin/python benchmarks/serve_memory.py --workers 2 --apps --requests 64   # + the demo's bot and FAQ
    .venv/bin/python benchmarks/serve_memory.py --workers 2 --apps --embeddings --requests 64   # + /v1/embeddings

`--apps` sets up what `modelshop demo` serves beside the model (its FAQ knowledge base `demo-faq` and
the support bot `demo-support` on the model, `modelshop.demo.bot.seed_bot`) and, after the /predict
texts, sends the same texts as bot messages and as FAQ questions, so the measure includes whatever
the bot and the FAQ hold in the server: the models they run on, and any copy of their own.
`--embeddings` also sends them to /v1/embeddings, so the server serves its embedding model (in-process
and, with worker processes, in workers of its own) whether or not the apps run on it.

Without --model it fine-tunes minilm for one epoch on the demo's bundled support messages (the
model `modelshop demo` serves, minus seven epochs: the same architecture, labels and size) into a
temp home. Loopback only, a bounded number of requests, every server stopped at the end. Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import serve_load as sl  # the load generator and server helpers of the main benchmark

MB = 1024 * 1024


def smaps_rollup(pid: int) -> dict[str, int]:
    """RSS, PSS and USS of one process, in bytes (Linux /proc/PID/smaps_rollup, kB there)."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        kb[name] = int(rest.split()[0])
    return {"rss": kb["Rss"] * 1024, "pss": kb["Pss"] * 1024,
            "uss": (kb["Private_Clean"] + kb["Private_Dirty"]) * 1024}


def tree(root: int) -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of `root` and all its live descendants."""
    procs: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = sl._stat(int(entry.name))[0]
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # it exited meanwhile
            procs[int(entry.name)] = (parent, cmd)
    members, grew = {root}, True
    while grew:
        grew = False
        for pid, (parent, _) in procs.items():
            if parent in members and pid not in members:
                members.add(pid)
                grew = True
    return {pid: procs[pid] for pid in members if pid in procs}


def roles(root: int) -> list[tuple[str, int]]:
    """(role, pid) of every process of a server's tree: server, fork server, workers, others."""
    procs = tree(root)
    forkservers = [p for p, (_, cmd) in procs.items() if "multiprocessing.forkserver" in cmd and procs[p][0] == root]
    out = [("server", root)]
    for fs in forkservers:
        out.append(("fork server", fs))
        out.extend(("worker", p) for p, (parent, _) in sorted(procs.items()) if parent == fs)
    named = {p for _, p in out}
    out.extend(("resource tracker" if "resource_tracker" in cmd else "other", p)
               for p, (_, cmd) in sorted(procs.items()) if p not in named)
    return out


def ask_apps(port: int, texts: list[str], apps: bool, embeddings: bool) -> None:
    """Every text as a message to the demo's bot and as a question to its FAQ (`apps`), and to
    /v1/embeddings (`embeddings`); all must answer 200."""
    from modelshop.demo.bot import BOT_NAME, KB_NAME

    calls = [("/v1/embeddings", lambda t: {"input": t})] if embeddings else []
    if apps:
        calls += [(f"/apps/support/{BOT_NAME}/message", lambda t: {"text": t}),
                  (f"/apps/faq/{KB_NAME}/ask", lambda t: {"question": t})]
    for path, body in calls:
        result = sl.load(port, path, texts, body, seconds=120)
        if result["ok"] != len(texts):
            bad = next((a for a in result["answers"].values() if a[0] != 200), (None, b""))
            raise RuntimeError(f"{path}: {len(texts) - result['ok']} of {len(texts)} requests failed: "
                               f"{bad[0]} {bad[1][:300]!r}")


def measure(home: Path, name: str, workers: int, processes: bool, texts: list[str],
            apps: bool = False, embeddings: bool = False) -> list[dict]:
    port = sl.free_port()
    env = {"MODELSHOP_HOME": str(home), "MODELSHOP_ADMIN_KEY": sl.KEY, "MODELSHOP_PROGRESS": "false",
           "MODELSHOP_DEFAULT_MODEL": name, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "MODELSHOP_SERVE_WORKERS": str(workers), "MODELSHOP_SERVE_PROCESSES": str(processes).lower()}
    proc = sl.start([sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port", str(port)],
                    env, port)
    try:
        result = sl.load(port, f"/predict?model={name}", texts, sl.ours_body, seconds=120)
        if result["ok"] != len(texts):
            raise RuntimeError(f"{len(texts) - result['ok']} of {len(texts)} requests failed")
        ask_apps(port, texts, apps, embeddings)
        time.sleep(1)  # let freed buffers settle
        found = roles(proc.pid)
        running = sum(role == "worker" for role, _ in found)
        # the embedding model, once served, has workers of its own
        if processes and (running < workers if apps or embeddings else running != workers):
            raise RuntimeError(f"expected {workers} worker processes, found {[r for r, _ in found]}")
        return [{"role": role, "pid": pid, **smaps_rollup(pid)} for role, pid in found]
    except Exception:
        sl.stop(proc)
        print(f"server stderr (last 3000 characters):\n{proc.stderr.read().decode(errors='replace')[-3000:]}",
              file=sys.stderr)
        raise
    finally:
        sl.stop(proc)


def report(label: str, rows: list[dict]) -> dict:
    print(f"\n{label}")
    print(f"  {'process':18s} {'pid':>7s} {'USS MB':>8s} {'PSS MB':>8s} {'RSS MB':>8s}")
    for r in rows:
        print(f"  {r['role']:18s} {r['pid']:7d} {r['uss'] / MB:8.0f} {r['pss'] / MB:8.0f} {r['rss'] / MB:8.0f}")
    total = sum(r["pss"] for r in rows)
    print(f"  {'total PSS':18s} {'':7s} {'':8s} {total / MB:8.0f}")
    by_role: dict[str, list[int]] = {}
    for r in rows:
        by_role.setdefault(r["role"], []).append(r["uss"])
    return {"total_pss": total, **{role: sum(v) / len(v) for role, v in by_role.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--home", type=Path, help="modelshop home holding --model (default: a fresh temp home)")
    p.add_argument("--model", help="registered PyTorch model to serve (default: fine-tune one now)")
    p.add_argument("--workers", default="1,2,4", help="worker counts to measure, comma-separated")
    p.add_argument("--requests", type=int, default=256, help="texts sent to each server before measuring")
    p.add_argument("--apps", action="store_true", help="also set up the demo's FAQ and support bot and send the "
                   "texts to them too (as bot messages and as FAQ questions) before measuring")
    p.add_argument("--embeddings", action="store_true", help="also send the texts to /v1/embeddings, so the "
                   "server serves its embedding model whatever the apps do")
    args = p.parse_args()
    if not Path("/proc/self/smaps_rollup").exists():
        p.error("needs Linux 4.14+ (/proc/PID/smaps_rollup)")
    counts = [int(n) for n in args.workers.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from modelshop.demo import DATA as DEMO_DATA
    from modelshop.settings import Settings

    home = args.home or Path(tempfile.mkdtemp(prefix="serve-memory-"))
    name = args.model
    if name is None:
        from modelshop.train import TrainConfig, run_training

        name = "support-intent"
        print(f"fine-tuning minilm on the demo's support messages (1 epoch) into {home} ...", flush=True)
        run_training(DEMO_DATA, name=name, settings=Settings(home=home, progress=False),
                     cfg=TrainConfig(base_model="minilm", epochs=1, tfidf_baseline=False, validation_fraction=0.0))
    if args.apps:
        from modelshop.demo.bot import seed_bot

        bot = seed_bot(Settings(home=home, progress=False), name, DEMO_DATA)
        print(f"bot {bot['name']} on {name}, FAQ {bot['kb']['name']}:{bot['kb']['version']} "
              f"({bot['kb']['entries']} answers)", flush=True)
    texts = [json.loads(line)["text"] for line in DEMO_DATA.read_text().splitlines()]
    texts = (texts * (args.requests // len(texts) + 1))[:args.requests]

    import modelshop

    asked = (" + bot and FAQ" if args.apps else "") + (" + /v1/embeddings" if args.embeddings else "")
    print(f"modelshop from {Path(modelshop.__file__).parent}", flush=True)
    summary = {}
    for n in counts:
        summary[n] = report(f"{n} worker process(es) (MODELSHOP_SERVE_WORKERS={n}, MODELSHOP_SERVE_PROCESSES=true)"
                            + asked, measure(home, name, n, True, texts, args.apps, args.embeddings))
    threads = report(f"baseline: {counts[-1]} workers on threads of the server (MODELSHOP_SERVE_PROCESSES=false)"
                     + asked, measure(home, name, counts[-1], False, texts, args.apps, args.embeddings))
    print("\nsummary (MB): workers | USS server | USS fork server | USS per worker | total PSS | "
          "total PSS on threads, same workers")
    for n, s in summary.items():
        print(f"  {n:2d} | {s['server'] / MB:6.0f} | {s.get('fork server', 0) / MB:6.0f} | "
              f"{s.get('worker', 0) / MB:6.0f} | {s['total_pss'] / MB:6.0f} |"
              + (f" {threads['total_pss'] / MB:6.0f}" if n == counts[-1] else ""))
    if len(counts) > 1:
        first, last = counts[0], counts[-1]
        step = (summary[last]["total_pss"] - summary[first]["total_pss"]) / (last - first)
        print(f"each worker added {step / MB:.0f} MB of total PSS (from {first} to {last} workers)")


if __name__ == "__main__":
    main()
