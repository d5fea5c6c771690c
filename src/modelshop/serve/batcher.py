"""Dynamic batching in the manner of text-embeddings-inference: one owner of each model's queue.

Each served model has one `Batcher`: a deque of inputs, each carrying its own future (its reply
slot), and one asyncio task that owns the deque. When the model is free the task takes what is
queued, oldest first, until the batch would pass the token budget (`max_batch_tokens`, counted
padded: longest × count) or `max_batch_requests`; inputs whose client has gone (future cancelled)
are dropped before inference. The forward pass runs on one of the model's `workers` threads (each
a batch at a time, like Triton's model instances), so the event loop keeps accepting requests
meanwhile, and the next batch is whatever arrived in the meantime. On a CPU, two single-threaded
workers beat one two-threaded one: no barrier between threads for every small matrix product, and
the event loop's own work delays one batch instead of stalling both cores.
There is no idle wait unless `max_wait_ms` asks for one.

`Slots` is the backpressure: a fixed number of requests in flight; past it, 429 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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
    """The queue of one served model and the task that owns it."""

    def __init__(self, name: str, run: Callable[[list[Any]], Sequence[Any]], executor: ThreadPoolExecutor, *,
                 max_batch_tokens: int, max_batch_requests: int, max_wait_ms: float, metrics: Metrics,
                 workers: int = 1) -> None:
        self.name = name
        self._run = run
        self._executor = executor
        self.max_batch_tokens = max_batch_tokens
        self.max_batch_requests = max_batch_requests
        self.max_wait_s = max_wait_ms / 1000.0
        self.workers = workers  # batches run at once (the executor has as many threads)
        self._running: set[asyncio.Task] = set()
        self._metrics = metrics
        self._queue: deque[Item] = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._batches = 0

    def __len__(self) -> int:
        return len(self._queue)

    async def submit(self, payloads: list[Any], tokens: list[int]) -> list[ItemResult]:
        """Queue these inputs and wait for all of their results; cancelling drops the ones not yet run."""
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [Item(p, t, loop.create_future(), now) for p, t in zip(payloads, tokens, strict=True)]
        self._queue.extend(items)
        self._metrics.queue_size.labels(self.name).set(len(self._queue))
        self._ensure_running()
        self._wakeup.set()
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        except BaseException:
            for i in items:  # the client left, or one input failed: the rest must not run for nobody
                i.future.cancel()
            raise

    def close(self) -> None:
        """Finish what is queued, then stop (a later submit starts the task again)."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()

    async def aclose(self) -> None:
        self.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _ensure_running(self) -> None:
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher:{self.name}")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._queue or len(self._running) >= self.workers:
                    if not self._queue and self._closing:
                        if self._running:  # finish what runs; anything submitted meanwhile goes next
                            await asyncio.wait(set(self._running))
                            continue
                        return
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                if self.max_wait_s > 0:
                    await self._wait_for_more()
                batch = self._take()
                self._metrics.queue_size.labels(self.name).set(len(self._queue))
                if batch:
                    task = loop.create_task(self._run_batch(loop, batch))
                    self._running.add(task)
                    task.add_done_callback(self._finished)
        finally:
            for item in self._queue:  # only on cancellation (shutdown): nobody will run these
                if not item.future.done():
                    item.future.set_exception(ModelError(f"{self.name} stopped before this input ran"))
            self._queue.clear()

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if self._wakeup is not None:
            self._wakeup.set()  # a worker is free

    async def _wait_for_more(self) -> None:
        deadline = self._queue[0].enqueued + self.max_wait_s
        while len(self._queue) < self.max_batch_requests:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[Item]:
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
        if batch:
            self._metrics.batch_size.labels(self.name).observe(len(batch))
            self._metrics.batch_tokens.labels(self.name).observe(longest * len(batch))
        return batch

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[Item]) -> None:
        self._batches += 1
        batch_id = self._batches
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._executor, self._run, [i.payload for i in batch])
        except ModelshopError as e:
            error: BaseException = e
        except Exception as e:  # noqa: BLE001 - any failure of the model answers its own inputs, not the loop
            log.exception("batch of %d inputs failed on %s", len(batch), self.name)
            error = ModelError(f"{self.name} failed on this batch: {type(e).__name__}: {e}")
        else:
            elapsed = time.perf_counter() - started
            self._metrics.inference_seconds.labels(self.name).observe(elapsed)
            for item, out in zip(batch, outputs, strict=True):
                self._metrics.queue_seconds.labels(self.name).observe(started - item.enqueued)
                if not item.future.done():
                    item.future.set_result(ItemResult(out, started - item.enqueued, elapsed, batch_id))
            return
        for item in batch:
            if not item.future.done():
                item.future.set_exception(error)


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
