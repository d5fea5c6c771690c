"""One server's state and the path every inference request takes through it.

    slot (429 when full) → tokenise (tokeniser thread) → meter.admit(units) → batcher → rows

The apps inside the server take the same path (`run`, through `PooledModels`), unmetered there:
their route meters the app call as a whole.

A request whose client disconnects while it waits is cancelled: its inputs are dropped from the
queue before they reach the model, and nothing is metered for it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request

from modelshop.errors import PayloadTooLarge, ValidationError
from modelshop.gate import Units
from modelshop.registry import Registry
from modelshop.serve.batcher import Slots
from modelshop.serve.generation import GenerativePool
from modelshop.serve.metrics import Metrics
from modelshop.serve.pool import ModelPool, ServedModel
from modelshop.serve.runners import Seq
from modelshop.settings import Settings


class ClientGone(Exception):
    """The client disconnected before its reply was ready (answered 499, which nobody reads)."""


@dataclass
class Outcome:
    rows: list[np.ndarray]
    units: Units
    queue_s: float
    inference_s: float
    tokenize_s: float
    truncated: int


class Service:
    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.slots = Slots(settings.max_concurrent_requests, self.metrics)
        registry = registry or Registry.from_settings(settings)
        self.pool = ModelPool(settings, registry, self.metrics)
        self.generative = GenerativePool(settings, registry, self.metrics)

    def check_texts(self, seqs: list[Seq]) -> None:
        """Count, emptiness and length of the texts, before any model work."""
        s = self.settings
        if not seqs:
            raise ValidationError("no inputs: send at least one text")
        if len(seqs) > s.max_inputs_per_request:
            raise PayloadTooLarge(f"{len(seqs)} inputs in one request; the limit is {s.max_inputs_per_request} "
                                  "(max_inputs_per_request): split them over several requests")
        for i, pair in enumerate(seqs):
            for text in pair:
                if text is None:
                    continue
                if not text.strip():
                    raise ValidationError(f"input {i} is empty; send text with at least one visible character")
                if len(text) > s.max_input_chars:
                    raise PayloadTooLarge(f"input {i} has {len(text)} characters; the limit is {s.max_input_chars} "
                                          "(max_input_chars): shorten or split it")

    def truncate(self, asked: bool | None) -> bool:
        return self.settings.auto_truncate if asked is None else asked

    async def infer(self, request: Request, meter, served: ServedModel, seqs: list[Seq], *,
                    truncate: bool, direction: str = "right") -> Outcome:
        """A metered route's inference: admitted once its units are known, cancelled if the client leaves."""
        return await self.run(served, seqs, truncate=truncate, direction=direction, admit=meter.admit,
                              until=functools.partial(until_disconnect, request))

    async def run(self, served: ServedModel, seqs: list[Seq], *, truncate: bool, direction: str = "right",
                  admit: Callable[[str, Units], Awaitable[None]] | None = None,
                  until: Callable[[Awaitable], Awaitable] | None = None) -> Outcome:
        """The one path of every inference, a route's or an app's (`PooledModels`): slot → tokenise →
        `admit(ref, units)` when given → the model's batcher (awaited through `until` when given)."""
        self.check_texts(seqs)
        with self.slots.take():
            encoded, tokenize_s = await served.prepare(seqs, truncate, direction.lower())
            units = Units(requests=1, tokens=sum(e.tokens for e in encoded),
                          characters=sum(len(a) + len(b or "") for a, b in seqs))
            if admit is not None:
                await admit(served.ref, units)   # NAME:VERSION: keys scoped to a version work
            work = served.batcher.submit(encoded, [e.tokens for e in encoded])
            results = await (until(work) if until is not None else work)
        batches = {r.batch_id: r.inference_s for r in results}
        return Outcome([r.output for r in results], units, max(r.queue_s for r in results),
                       sum(batches.values()), tokenize_s, sum(e.truncated for e in encoded))

    async def start(self) -> None:
        """Load every production version, classifiers and generative models (answering only once they are in)."""
        await asyncio.gather(self.pool.start(), self.generative.start())

    async def aclose(self) -> None:
        await asyncio.gather(self.pool.aclose(), self.generative.aclose())


async def until_disconnect(request: Request, work):
    """Await `work` unless the client disconnects first; then cancel it and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGone()


async def _disconnected(request: Request) -> None:
    # The body is already read, so the next ASGI message is the disconnect (servers send it when the
    # client goes away, test transports once the response is complete).
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
