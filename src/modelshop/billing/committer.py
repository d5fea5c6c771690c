"""Group commit: concurrent usage records within a short window share one transaction.

Each `submit` parks a future; one flusher per event loop waits `window` seconds for company,
writes everything queued in a single transaction (in a worker thread, so the loop keeps
serving) and resolves every future only after the commit. A reply therefore leaves only once
its usage event is durable, and N concurrent calls cost one commit instead of N. Records that
arrive while a batch is being written form the next batch at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommitter(Generic[T, R]):
    def __init__(self, write: Callable[[list[T]], list[R]], window_s: float, max_batch: int) -> None:
        self._write = write               # blocking: writes a batch in one transaction, one result per item
        self._window = window_s
        self._max = max_batch
        self._queue: list[tuple[T, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.Task | None = None
        self.batches = 0                  # transactions written (for tests and metrics)
        self.items = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:        # a new event loop (e.g. a new test): start afresh on it
            self._loop, self._flusher, self._queue = loop, None, []
        fut = loop.create_future()
        self._queue.append((item, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        # shielded: a client that goes away does not cancel the write others share
        return await asyncio.shield(fut)

    async def _flush(self) -> None:
        if self._window > 0 and len(self._queue) < self._max:
            await asyncio.sleep(self._window)
        while self._queue:
            batch, self._queue = self._queue[: self._max], self._queue[self._max:]
            try:
                results = await asyncio.to_thread(self._write, [item for item, _ in batch])
            except Exception as e:  # noqa: BLE001 - the error belongs to every caller in the batch
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written."""
        if self._flusher is not None and self._loop is asyncio.get_running_loop():
            await asyncio.shield(self._flusher)
