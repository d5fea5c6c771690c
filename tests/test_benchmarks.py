"""The figures in README.md and BENCHMARKS.md name the command that reproduces them, and that command
exists; serve_memory.py reads a real process tree (server → fork server → workers) right; llm_load.py
runs end to end on a tiny model; gateway_load.py's smoke run meters every call it answered once."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = re.compile(r"benchmarks/([a-z_]+\.py)")
COMMAND = re.compile(r"^    (?:[A-Z_]+=\S+ )*\.venv/bin/(?:python benchmarks/[a-z_]+\.py|modelshop |python -m pytest )",
                     re.M)


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_named_benchmark_scripts_exist(doc: str) -> None:
    text = (REPO / doc).read_text()
    missing = sorted({name for name in SCRIPT.findall(text) if not (REPO / "benchmarks" / name).exists()})
    assert not missing, f"{doc} names benchmark scripts that are not in benchmarks/: {missing}"


def test_every_benchmarks_section_has_a_command() -> None:
    sections = re.split(r"^## ", (REPO / "BENCHMARKS.md").read_text(), flags=re.M)[1:]
    bare = [s.splitlines()[0] for s in sections if not COMMAND.search(s)]
    assert not bare, f"BENCHMARKS.md sections without a command that reproduces them: {bare}"


def test_readme_memory_figures_name_their_command() -> None:
    # a paragraph of README.md that gives a size in MB or GB says which script measured it
    for paragraph in (REPO / "README.md").read_text().split("\n\n"):
        if re.search(r"\d ?[MG]B\b", paragraph):
            assert SCRIPT.search(paragraph), f"README.md gives a memory figure without its command: {paragraph[:200]}"


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def test_serve_memory_reads_a_fork_server_tree() -> None:
    if not Path("/proc/self/smaps_rollup").exists() or "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs Linux /proc/PID/smaps_rollup and the forkserver start method")
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import serve_memory
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    mine = serve_memory.smaps_rollup(os.getpid())
    assert 0 < mine["uss"] <= mine["pss"] <= mine["rss"]
    ctx = multiprocessing.get_context("forkserver")
    children = [ctx.Process(target=_sleep, args=(30,), daemon=True) for _ in range(2)]
    for child in children:
        child.start()
    try:
        found = serve_memory.roles(os.getpid())
        assert found[0] == ("server", os.getpid()) and [role for role, _ in found].count("fork server") == 1
        # the fork server is shared by the whole test process: earlier tests' workers may still be there
        assert {c.pid for c in children} <= {pid for role, pid in found if role == "worker"}
    finally:
        for child in children:
            child.kill()
            child.join(5)


@pytest.mark.slow
def test_llm_load_runs_every_row_on_a_tiny_llama(tiny_llama: Path, tmp_path: Path) -> None:
    # the smallest real run: our server and the naive one as subprocesses, generate and our engine in process
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "llm_load.py"), "--home", str(tmp_path / "home"),
         "--base-model", str(tiny_llama), "--prompts", "4", "--max-tokens", "6", "--clients", "2,3", "--rounds", "1",
         "--json", str(figures)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(figures.read_text())
    rows = result["rows"]
    assert [label.split(" ")[0] for label in rows] == ["(c)", "(a0)", "(a)", "(a)", "(b)"]
    for label, r in rows.items():
        assert r["requests"] == 4 and r["errors"] == 0 and r["tok_s"] > 0, label
        # greedy: every row answers as generate() alone does, and counts the same output tokens
        assert r["same_as_b"] == 4, label
    assert len({r["tokens"] for r in rows.values()}) == 1
    assert set(result["targets"]) == {"a_over_b", "ttft_a_over_latency_b", "a_over_c"}
    assert "targets:" in done.stdout


@pytest.mark.slow
def test_gateway_load_quick_run_meters_every_call_once(tmp_path: Path) -> None:
    # the smoke run: the fast stand-in, direct and through `modelshop serve` with metering on (no LiteLLM)
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gateway_load.py"), "--quick", "--skip-litellm",
         "--home", str(tmp_path / "home"), "--json", str(figures)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(figures.read_text())
    rows = result["rows"]
    assert sorted(rows) == sorted(f"{who} {mode}" for who in ("(a) modelshop gateway, metering on",
                                                               "(c) direct to the stand-in")
                                  for mode in ("plain", "stream"))
    for label, r in rows.items():
        # every reply whole and right (the stand-in's text and usage, every chunk and [DONE])
        assert r["ok"] == 200 and r["wrong"] == r["errors"] == 0 and r["req_s"] > 0, label
    assert rows["(a) modelshop gateway, metering on stream"]["ttft_p50_ms"] is not None
    ledger = result["targets"]["ledger"]
    assert ledger["exactly_once"] and ledger["rows"] == ledger["answered"] == 2 * (200 + 32)   # warm-up included
    assert "targets (issue 14):" in done.stdout and "a_over_b" not in result["targets"]["plain"]
