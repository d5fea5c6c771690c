"""Model workers in processes of their own (`serve_processes`): the same answers as threads; a killed
worker is replaced and its batch retried; a late batch after close runs in the server; a worker that
cannot start, or a batch that fails in one, says why; a swap and a shutdown leave no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.errors import ModelError
from modelshop.platform import build_app
from modelshop.registry import Registry
from modelshop.serve.pool import _classifier_runner
from modelshop.serve.runners import TransformerRunner
from modelshop.serve.workers import ProcessWorkers
from modelshop.train import TrainConfig, run_training
from tests.support import ADMIN_KEY, AUTH, FAST, free_port, make_settings, wait_healthy

TEXTS = ["great product, works well", "awful service, never again", "late delivery and rude staff, the worst"]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def wait_gone(pids: list[int], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"worker processes {[p for p in pids if alive(p)]} still running"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def toy_path(served_settings):
    registry = Registry.from_settings(served_settings)
    return registry.path(registry.get("toy"))


def local_runner(path) -> TransformerRunner:
    return _classifier_runner(str(path), "cpu", 1, "toy:1")


def test_processes_answer_as_threads_do_and_stop_with_the_server(served_settings, tiny_bert):
    answers, pids = {}, []
    for processes in (False, True):
        settings = make_settings(served_settings.home, serve_processes=processes, serve_workers=2,
                                 embedding_model=str(tiny_bert))
        with TestClient(build_app(settings)) as c:
            served = c.app.state.modelshop.service.pool.served["toy"]
            assert (served.processes is not None) == processes
            if processes:
                pids = served.processes.pids()
                assert len(pids) == 2 and os.getpid() not in pids
            r = c.post("/predict?model=toy", json={"inputs": [[t] for t in TEXTS] + [["is it good?", "yes"]]},
                       headers=AUTH)
            assert r.status_code == 200, r.text
            explained = c.post("/explain?model=toy", json={"inputs": TEXTS[0]}, headers=AUTH)
            assert explained.status_code == 200, explained.text
            embedded = c.post("/v1/embeddings", json={"input": TEXTS, "model": tiny_bert.name}, headers=AUTH)
            assert embedded.status_code == 200, embedded.text
            answers[processes] = (r.json(), [d["embedding"] for d in embedded.json()["data"]])
    threads, procs = answers[False], answers[True]
    for a, b in zip(threads[0], procs[0], strict=True):
        assert [p["label"] for p in a] == [p["label"] for p in b]
        assert [p["score"] for p in a] == pytest.approx([p["score"] for p in b], abs=1e-6)
    assert np.allclose(threads[1], procs[1], atol=1e-6)
    wait_gone(pids)  # the server's shutdown stopped its workers


def test_a_killed_worker_is_replaced_and_its_batch_retried(toy_path):
    runner = local_runner(toy_path)
    batch = runner.prepare([(t, None) for t in TEXTS], True)
    expected = np.stack(runner.run(batch))
    workers = ProcessWorkers(_classifier_runner, (str(toy_path), "cpu", 1, "toy:1"), n=1, threads=1,
                             label="toy:1", fallback=runner.run)
    workers.start()
    try:
        assert np.allclose(np.stack(workers.run(batch)), expected, atol=1e-6)
        (first,) = workers.pids()
        os.kill(first, signal.SIGKILL)
        wait_gone([first])
        assert np.allclose(np.stack(workers.run(batch)), expected, atol=1e-6)  # retried on a new worker
        (second,) = workers.pids()
        assert second != first
    finally:
        workers.close()
    wait_gone([second])
    assert np.allclose(np.stack(workers.run(batch)), expected, atol=1e-6)  # after close: in this process


def test_a_worker_killed_under_the_server_is_counted_and_replaced(served_settings):
    settings = make_settings(served_settings.home, serve_processes=True, serve_workers=1)
    with TestClient(build_app(settings)) as c:
        workers = c.app.state.modelshop.service.pool.served["toy"].processes
        (first,) = workers.pids()
        os.kill(first, signal.SIGKILL)
        wait_gone([first])
        r = c.post("/predict?model=toy", json={"inputs": TEXTS[0]}, headers=AUTH)
        assert r.status_code == 200, r.text
        assert workers.pids() != [first]
        assert 'modelshop_worker_restarts_total{model="toy:1"} 1.0' in c.get("/metrics", headers=AUTH).text


def test_killing_the_server_leaves_no_worker_behind(served_settings):
    port = free_port()
    env = {**os.environ, "MODELSHOP_HOME": str(served_settings.home), "MODELSHOP_ADMIN_KEY": ADMIN_KEY,
           "MODELSHOP_PROGRESS": "false", "MODELSHOP_SERVE_PROCESSES": "true", "MODELSHOP_SERVE_WORKERS": "2",
           "MODELSHOP_DEFAULT_MODEL": "toy"}
    proc = subprocess.Popen([sys.executable, "-c", "from modelshop.cli import main; main()", "serve", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_healthy(port, proc)
        assert httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": TEXTS[0]}, headers=AUTH).is_success
        family = descendants(proc.pid)
        assert len(family) >= 2  # the fork server and the workers (the toy model's and any others)
    finally:
        proc.kill()
        proc.wait()
    wait_gone(family)


def descendants(pid: int) -> list[int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError):
                continue
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_a_failing_batch_says_why_and_the_worker_goes_on(toy_path):
    runner = local_runner(toy_path)
    good = runner.prepare([(TEXTS[0], None)], True)
    bad = runner.prepare([(TEXTS[1], None)], True)
    bad[0].ids = [10**9] * len(bad[0].ids)  # no such token: the embedding lookup fails in the worker
    workers = ProcessWorkers(_classifier_runner, (str(toy_path), "cpu", 1, "toy:1"), n=1, threads=1,
                             label="toy:1", fallback=runner.run)
    workers.start()
    try:
        (pid,) = workers.pids()
        with pytest.raises(ModelError, match=r"toy:1 failed on this batch: IndexError"):
            workers.run(bad)
        assert workers.run(good)[0].shape == (2,)
        assert workers.pids() == [pid]  # the same worker: a bad batch is not a dead worker
    finally:
        workers.close()


def test_a_worker_that_cannot_start_says_why(tmp_path):
    workers = ProcessWorkers(_classifier_runner, (str(tmp_path / "nowhere"), "cpu", 1, "gone:1"), n=1, threads=1,
                             label="gone:1", fallback=lambda batch: [])
    with pytest.raises(ModelError, match=r"model worker worker-gone:1-0 could not start: \w+Error"):
        workers.start()
    assert workers.pids() == []


def test_a_promoted_version_replaces_the_workers_of_the_old_one(tmp_path, tiny_bert, toy_files):
    settings = make_settings(tmp_path / "home", serve_processes=True, serve_workers=1)
    cfg = TrainConfig(base_model=str(tiny_bert), max_length=32, **FAST)
    run_training(*toy_files, name="toy", settings=settings, cfg=cfg)
    registry = Registry.from_settings(settings)
    with TestClient(build_app(settings)) as c:
        pool = c.app.state.modelshop.service.pool
        old = pool.served["toy"].processes.pids()
        assert c.post("/predict", json={"inputs": "great"}, headers=AUTH).headers["x-model"] == "toy:1"
        run_training(*toy_files, name="toy", settings=settings, cfg=cfg)
        registry.promote("toy:2")
        deadline = time.monotonic() + 60
        while c.post("/predict", json={"inputs": "great"}, headers=AUTH).headers["x-model"] != "toy:2":
            assert time.monotonic() < deadline, "the promoted version was never served"
            time.sleep(0.05)
        new = pool.served["toy"].processes.pids()
        assert new and not set(new) & set(old)
        wait_gone(old)  # the retired version's workers finished and stopped
    wait_gone(new)
