"""Model workers in processes of their own, so that no forward pass waits on the event loop's GIL.

A PyTorch forward is hundreds of small operator calls, each of which gives up Python's GIL and
takes it back. With the model on a thread of the server process, every one of those calls may
wait while the event loop parses HTTP, validates and serialises: on a busy CPU server the model
threads stall and cores sit idle. `ProcessWorkers` keeps `n` child processes instead, each with
its own copy of the model (and its own GIL) and `threads` torch threads, each running one batch at
a time, as Triton's CPU model instances do. The server process keeps tokenising, batching and
answering; a batch travels to a child as token ids and comes back as one row per input.

`run(batch)` has the signature of a runner's `run`, so the batcher calls it from its worker
threads as it calls a runner in-process: each of those threads blocks (GIL released) on its own
child. A child that dies (killed, out of memory) is started again and its batch retried once on
the new one; after `close()` (a newer version took over) a late batch runs in this process on
`fallback`, so a request that already held this version still gets its answer.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from modelshop.errors import ModelError

log = logging.getLogger("modelshop.serve")

STARTUP_TIMEOUT_S = 300.0


def worker_context():
    """Workers start from a fork server that has imported torch and transformers once (a fresh
    interpreter per worker would import them again, seconds each); never a plain fork of the server,
    whose torch thread pools and event loop threads a child must not inherit mid-use."""
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "modelshop.serve.pool"])
    return ctx


def _child(conn: Connection, factory: Callable[..., Any], args: tuple, threads: int) -> None:
    """A worker process: build the runner, say ready, then run batches until told to stop."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which then stops us
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        torch.set_num_threads(threads)
        from modelshop.serve.runners import ready

        runner = factory(*args)
        ready(runner, f"worker {os.getpid()}")
    except BaseException as e:  # noqa: BLE001 - the parent reports why this worker could not start
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the server has gone
            return
        if batch is None:
            return
        try:
            rows = runner.run(batch)
        except BaseException as e:  # noqa: BLE001 - the batch fails, the worker goes on
            conn.send(("error", f"{type(e).__name__}: {e}"))
        else:
            conn.send(("ok", rows))


class _Child:
    def __init__(self, ctx, factory, args, threads: int, name: str) -> None:
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=_child, args=(theirs, factory, args, threads), name=name, daemon=True)
        self.process.start()
        theirs.close()

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            self.kill()
            raise ModelError(f"model worker {self.process.name} did not start within {timeout:.0f} s")
        try:
            kind, detail = self.conn.recv()
        except EOFError:
            kind, detail = "failed", f"it exited with code {self.process.exitcode}"
        if kind != "ready":
            self.kill()
            raise ModelError(f"model worker {self.process.name} could not start: {detail}")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessWorkers:
    """`n` processes each holding the runner `factory(*args)` builds; `run` sends a batch to a free one."""

    def __init__(self, factory: Callable[..., Any], args: tuple, *, n: int, threads: int, label: str,
                 fallback: Callable[[list[Any]], Any], on_restart: Callable[[], None] | None = None) -> None:
        self.factory, self.args = factory, args
        self.n, self.threads, self.label = n, threads, label
        self.fallback = fallback
        self.on_restart = on_restart
        self._ctx = worker_context()
        self._idle: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        self._children: list[_Child] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start every worker and wait until each has loaded the model (blocking: call it in a thread)."""
        started = time.perf_counter()
        children = [self._spawn(i) for i in range(self.n)]
        try:
            for child in children:
                child.wait_ready(STARTUP_TIMEOUT_S)
        except BaseException:
            for child in children:
                child.kill()
            raise
        for child in children:
            self._idle.put(child)
        log.info("%s: %d worker processes of %d thread(s) ready in %.1f s", self.label, self.n, self.threads,
                 time.perf_counter() - started)

    def _spawn(self, index: int) -> _Child:
        child = _Child(self._ctx, self.factory, self.args, self.threads, f"worker-{self.label}-{index}")
        with self._lock:
            self._children.append(child)
        return child

    def pids(self) -> list[int]:
        with self._lock:
            return [c.process.pid for c in self._children if c.process.is_alive()]

    def run(self, batch: list[Any]) -> Any:
        """One output row per input of `batch`, from a free worker (blocks until one is free)."""
        if self._closed:
            return self.fallback(batch)
        child = self._idle.get()
        try:
            for attempt in (1, 2):
                try:
                    child.conn.send(batch)
                    kind, result = child.conn.recv()
                except (EOFError, OSError):
                    if self._closed:  # closed while this batch ran: finish it here
                        return self.fallback(batch)
                    code = child.process.exitcode if not child.process.is_alive() else "still running"
                    log.error("%s: worker process %s died (exit %s) during a batch of %d; starting another",
                              self.label, child.process.pid, code, len(batch))
                    child = self._replace(child)
                    if attempt == 2:
                        raise ModelError(f"{self.label}: the model worker process died twice on this batch "
                                         "of inputs; retry, and report it if it persists") from None
                    continue
                if kind == "error":
                    raise ModelError(f"{self.label} failed on this batch: {result}")
                return result
        finally:
            self._idle.put(child)

    def _replace(self, dead: _Child) -> _Child:
        dead.kill()
        if self.on_restart is not None:
            self.on_restart()
        with self._lock:
            index = self._children.index(dead)
            self._children.remove(dead)
        child = self._spawn(index)
        child.wait_ready(STARTUP_TIMEOUT_S)
        return child

    def close(self) -> None:
        """Stop every worker once it finishes its batch; later batches run on `fallback` in this process."""
        self._closed = True
        with self._lock:
            children = list(self._children)
            self._children.clear()
        for child in children:
            with contextlib.suppress(OSError):   # a child that already died has closed its end
                child.conn.send(None)
        deadline = time.monotonic() + 10
        for child in children:
            child.process.join(max(0.1, deadline - time.monotonic()))
            child.kill()
