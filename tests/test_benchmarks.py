"""The figures in README.md and BENCHMARKS.md name the command that reproduces them, and that command
exists; serve_memory.py reads a real process tree (server → fork server → workers) right."""

from __future__ import annotations

import multiprocessing
import os
import re
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
