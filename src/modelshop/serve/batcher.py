"""Dynamic batching in the manner of text-embeddings-inference: one queue per model, no idle wait.

Each served model has one `Batcher`: a deque of inputs, each carrying its own future (its reply
slot), and `workers` threads that run batches (each a batch at a time, like Triton's model
instances). A worker that is free takes what is queued, oldest first, until the batch would pass
the token budget (`max_batch_tokens`, counted padded: longest × count) or `max_batch_requests`;
inputs whose client has gone (future cancelled) are dropped before inference. The worker runs the
batch, hands the rows to the event loop and takes the next batch at once: a model never waits for
the event loop (busy parsing and answering HTTP) to be given work. On a CPU, two single-threaded
workers beat one two-threaded one: no barrier between threads for every small matrix product, and
the event loop's own work delays one batch instead of stalling both cores.
There is no idle wait unless `max_wait_ms` asks for one.

`Slots` is the backpressure: a fixed number of requests in flight; past it, 429 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from modelshop.errors import ModelError, ModelshopError, Overloaded
from modelshop.serve.metrics import Metrics

log = logging.getLogger("modelshop.serve")


@dataclass
class Item:
    payload: Any              # what the runner needs for this input (token ids, or the text)
    tokens: int               # its length in tokens, for the padded budget
    future: asyncio.Future
    enqueued: float


@dataclass(frozen=True)
class ItemResult:
    output: Any               # this input's row of the batch's output
    queue_s: float            # waited from enqueue to the start of its batch
    inference_s: float        # its batch's forward pass
    batch_id: int


class Batcher:
    """The queue of one served model and the worker threads that run its batches."""

    def __init__(self, name: str, run: Callable[[list[Any]], Sequence[Any]], *, max_batch_tokens: int,
                 max_batch_requests: int, max_wait_ms: float, metrics: Metrics, workers: int = 1) -> None:
        self.name = name
        self._run = run
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers  # batches run at once
        self._metrics = metrics
        self._queue: deque[Item] = deque()
        self._cond = threading.Condition()  # guards the queue, the threads and the counters below
        self._turns = threading.Semaphore(workers)  # a batch, or a `call`, holds one while it uses the model
        self._threads: set[threading.Thread] = set()
        self._closing = False
        self._batches = 0
        self.running = 0  # batches in the model now

    def __len__(self) -> int:
        return len(self._queue)

    async def submit(self, payloads: list[Any], tokens: list[int]) -> list[ItemResult]:
        """Queue these inputs and wait for all of their results; cancelling drops the ones not yet run."""
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [Item(p, t, loop.create_future(), now) for p, t in zip(payloads, tokens, strict=True)]
        with self._cond:
            self._queue.extend(items)
            self._metrics.queue_size.labels(self.name).set(len(self._queue))
            self._ensure_workers()
            self._cond.notify()
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        except BaseException:
            for i in items:  # the client left, or one input failed: the rest must not run for nobody
                i.future.cancel()
            raise

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` on a thread when a worker's turn is free, so it takes a turn instead of adding one."""
        def in_turn():
            with self._turns:
                return fn(*args)

        return await asyncio.to_thread(in_turn)

    def close(self) -> None:
        """Finish what is queued, then stop the workers (a later submit starts them again)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    async def aclose(self) -> None:
        """Close, and return once every queued input has been answered."""
        self.close()
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            await asyncio.to_thread(thread.join)
        await asyncio.sleep(0)  # the answers the workers handed over run before this returns

    def _ensure_workers(self) -> None:  # holding _cond
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, name=f"model-{self.name}-{len(self._threads)}",
                                      daemon=True)
            self._threads.add(thread)
            thread.start()

    def _work(self) -> None:
        """A worker: wait for inputs, take a batch in turn, run it, hand its rows over; until closed and empty."""
        try:
            while True:
                with self._cond:
                    while not self._queue:
                        if self._closing:
                            return
                        self._cond.wait()
                    if self.max_wait_s > 0:
                        self._wait_for_more()
                with self._turns:
                    with self._cond:
                        batch = self._take()
                        if batch:
                            self.running += 1
                            self._batches += 1
                            batch_id = self._batches
                    if batch:
                        try:
                            self._run_batch(batch, batch_id)
                        finally:
                            with self._cond:
                                self.running -= 1
        finally:
            with self._cond:
                self._threads.discard(threading.current_thread())
                if self._queue and not self._threads:  # only if this thread failed: keep serving
                    self._ensure_workers()

    def _wait_for_more(self) -> None:  # holding _cond
        deadline = self._queue[0].enqueued + self.max_wait_s
        while self._queue and len(self._queue) < self.max_batch_requests and not self._closing:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _take(self) -> list[Item]:  # holding _cond
        """Oldest first, until the padded token budget or the input count would be passed."""
        batch: list[Item] = []
        longest = 0
        while self._queue:
            item = self._queue[0]
            if item.future.done():  # cancelled: its client has gone
                self._queue.popleft()
                self._metrics.dropped.labels(self.name).inc()
                continue
            new_longest = max(longest, item.tokens)
            if batch and (len(batch) + 1 > self.max_batch_requests
                          or new_longest * (len(batch) + 1) > self.max_batch_tokens):
                break
            batch.append(self._queue.popleft())
            longest = new_longest
        self._metrics.queue_size.labels(self.name).set(len(self._queue))
        if batch:
            self._metrics.batch_size.labels(self.name).observe(len(batch))
            self._metrics.batch_tokens.labels(self.name).observe(longest * len(batch))
        return batch

    def _run_batch(self, batch: list[Item], batch_id: int) -> None:
        """On a worker thread: the forward pass, then the answers handed to each input's event loop."""
        started = time.perf_counter()
        outputs, error = None, None
        try:
            outputs = self._run([i.payload for i in batch])
        except ModelshopError as e:
            error = e
        except Exception as e:
            log.exception("batch of %d inputs failed on %s", len(batch), self.name)
            error = ModelError(f"{self.name} failed on this batch: {type(e).__name__}: {e}")
        elapsed = time.perf_counter() - started
        if error is None and len(outputs) != len(batch):
            error = ModelError(f"{self.name} gave {len(outputs)} outputs for a batch of {len(batch)} inputs")
        if error is None:
            self._metrics.inference_seconds.labels(self.name).observe(elapsed)
            for item in batch:
                self._metrics.queue_seconds.labels(self.name).observe(started - item.enqueued)
        by_loop: dict[asyncio.AbstractEventLoop, list[int]] = {}
        for k, item in enumerate(batch):
            by_loop.setdefault(item.future.get_loop(), []).append(k)
        for loop, ks in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody is waiting
                loop.call_soon_threadsafe(_answer, [batch[k] for k in ks],
                                          None if outputs is None else [outputs[k] for k in ks],
                                          error, started, elapsed, batch_id)


def _answer(items: list[Item], outputs: Sequence[Any] | None, error: BaseException | None, started: float,
            elapsed: float, batch_id: int) -> None:
    """On the event loop: each input's future gets its row, or the batch's error."""
    for k, item in enumerate(items):
        if item.future.done():
            continue
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(ItemResult(outputs[k], started - item.enqueued, elapsed, batch_id))


class Slots:
    """At most `limit` requests in flight; the next one is refused (429), never queued without bound."""

    def __init__(self, limit: int, metrics: Metrics) -> None:
        self.limit = limit
        self.used = 0
        self._metrics = metrics

    @contextlib.contextmanager
    def take(self):
        if self.used >= self.limit:
            self._metrics.overloaded.inc()
            raise Overloaded(f"server busy: {self.limit} requests in flight (max_concurrent_requests); "
                             "retry after the Retry-After seconds", retry_after=1.0)
        self.used += 1
        self._metrics.in_flight.set(self.used)
        try:
            yield
        finally:
            self.used -= 1
            self._metrics.in_flight.set(self.used)
