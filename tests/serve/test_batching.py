"""The batcher: token budget (padded), input cap, dropped departures, errors, optional wait; and
concurrent HTTP requests really sharing batches with the right answer each."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelshop.errors import ModelError, Overloaded
from modelshop.serve.batcher import Batcher, Slots
from modelshop.serve.metrics import Metrics
from modelshop.serve.runners import split_by_padding
from tests.support import AUTH


class Recorder:
    """A model stand-in that records the batches it is given (payload = its own output)."""

    def __init__(self, delay: float = 0.0, fail_on: str | None = None) -> None:
        self.batches: list[list] = []
        self.delay = delay
        self.fail_on = fail_on
        self.started = threading.Event()

    def __call__(self, payloads):
        self.started.set()
        self.batches.append(list(payloads))
        time.sleep(self.delay)
        if self.fail_on in payloads:
            raise RuntimeError("boom")
        return [f"out:{p}" for p in payloads]


def batcher(run, **kw) -> Batcher:
    options = dict(max_batch_tokens=100, max_batch_requests=8, max_wait_ms=0.0)
    return Batcher("m", run, metrics=Metrics(), **{**options, **kw})


def test_budget_counts_padded_tokens_and_caps_inputs():
    async def main():
        run = Recorder(delay=0.05)
        b = batcher(run)
        first = asyncio.ensure_future(b.submit(["warm"], [1]))  # occupies the model while the rest queue
        await asyncio.sleep(0.01)
        # lengths 10, 10, 40, 10: after [10, 10], adding 40 makes 40 × 3 = 120 > 100
        many = asyncio.ensure_future(b.submit(["a", "b", "c", "d"], [10, 10, 40, 10]))
        capped = asyncio.ensure_future(b.submit([f"x{i}" for i in range(10)], [1] * 10))
        assert [r.output for r in await first] == ["out:warm"]
        results = await many
        assert [r.output for r in results] == ["out:a", "out:b", "out:c", "out:d"]
        await capped
        await b.aclose()
        return run.batches

    batches = asyncio.run(main())
    assert batches[0] == ["warm"]
    assert batches[1] == ["a", "b"]                    # the budget closed it
    assert batches[2] == ["c", "d"]                    # 40 × 2 = 80 fits
    assert batches[3] == [f"x{i}" for i in range(8)]   # max_batch_requests closed it
    assert batches[4] == ["x8", "x9"]


def test_departed_clients_are_dropped_before_inference():
    async def main():
        run = Recorder(delay=0.1)
        b = batcher(run)
        busy = asyncio.ensure_future(b.submit(["busy"], [1]))
        await asyncio.sleep(0.02)
        gone = asyncio.ensure_future(b.submit(["gone1", "gone2"], [1, 1]))
        await asyncio.sleep(0.01)
        gone.cancel()
        later = await b.submit(["later"], [1])
        await busy
        await b.aclose()
        return run.batches, later, len(b)

    batches, later, left = asyncio.run(main())
    assert batches == [["busy"], ["later"]]
    assert later[0].output == "out:later" and left == 0


def test_a_failing_batch_answers_its_own_inputs_and_the_loop_goes_on():
    async def main():
        b = batcher(Recorder(fail_on="bad"))
        with pytest.raises(ModelError, match="failed on this batch: RuntimeError: boom"):
            await b.submit(["ok", "bad"], [1, 1])
        ok = await b.submit(["fine"], [1])
        await b.aclose()
        return ok

    assert asyncio.run(main())[0].output == "out:fine"


def test_max_wait_gathers_a_bigger_batch():
    async def main(wait_ms):
        run = Recorder()
        b = batcher(run, max_wait_ms=wait_ms)

        async def late(i):
            await asyncio.sleep(0.01 * i)
            return await b.submit([f"t{i}"], [1])

        await asyncio.gather(*(late(i) for i in range(4)))
        await b.aclose()
        return run.batches

    assert asyncio.run(main(200.0)) == [["t0", "t1", "t2", "t3"]]
    assert len(asyncio.run(main(0.0))) >= 3  # no idle wait: each ran as soon as the model was free


def test_slots_refuse_past_the_limit():
    slots = Slots(2, Metrics())
    with slots.take(), slots.take():
        with pytest.raises(Overloaded, match="2 requests in flight") as e, slots.take():
            pass
        assert e.value.status_code == 429 and e.value.retry_after >= 1
    with slots.take():
        assert slots.used == 1


def test_split_by_padding():
    assert sorted(map(sorted, split_by_padding([10, 10, 12, 11]))) == [[0, 1, 2, 3]]  # not worth a second call
    parts = split_by_padding([8] * 20 + [200] * 4)
    assert sorted(map(sorted, parts)) == [list(range(20)), [20, 21, 22, 23]]
    assert split_by_padding([5]) == [[0]]
    assert len(split_by_padding([8] * 20 + [200] * 4, call_overhead=10_000)) == 1  # calls too dear to split


def test_concurrent_requests_share_batches_and_get_their_own_answers(client):
    texts = [f"review number {i} " + ("great " if i % 2 else "awful ") * (i % 7 + 1) for i in range(24)]
    alone = {t: client.post("/predict?model=toy", json={"inputs": t}, headers=AUTH).json() for t in texts}
    before = _batch_count(client)

    def call(t):
        return t, client.post("/predict?model=toy", json={"inputs": t}, headers=AUTH).json()

    with ThreadPoolExecutor(12) as pool:
        together = dict(pool.map(call, texts))
    for t in texts:
        assert [p["label"] for p in together[t]] == [p["label"] for p in alone[t]]
        assert [p["score"] for p in together[t]] == pytest.approx([p["score"] for p in alone[t]], abs=1e-5)
    batches = _batch_count(client) - before
    assert batches < len(texts)  # some requests shared a forward pass


def _batch_count(client) -> float:
    for line in client.get("/metrics", headers=AUTH).text.splitlines():
        if line.startswith('modelshop_batch_size_count{model="toy:1"}'):
            return float(line.split()[-1])
    return 0.0


def test_workers_run_batches_side_by_side_and_close_waits_for_them():
    together = threading.Barrier(2, timeout=5)  # each batch waits until the other has started too

    def run(payloads):
        together.wait()
        time.sleep(0.05)
        return [f"out:{p}" for p in payloads]

    async def main():
        b = Batcher("m", run, metrics=Metrics(), max_batch_tokens=100,
                    max_batch_requests=2, max_wait_ms=0.0, workers=2)
        first = asyncio.ensure_future(b.submit(["a", "b"], [1, 1]))
        second = asyncio.ensure_future(b.submit(["c", "d"], [1, 1]))
        await asyncio.sleep(0.01)
        assert b.running == 2  # both batches are in the model at once
        b.close()
        await b.aclose()  # returns only once both have answered
        assert first.done() and second.done()
        return [r.output for r in await first], [r.output for r in await second]

    assert asyncio.run(main()) == (["out:a", "out:b"], ["out:c", "out:d"])


def test_one_worker_never_runs_two_batches_at_once():
    active, most = [0], [0]
    lock = threading.Lock()

    def run(payloads):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return list(payloads)

    async def main():
        b = Batcher("m", run, metrics=Metrics(), max_batch_tokens=100,
                    max_batch_requests=1, max_wait_ms=0.0, workers=1)
        await asyncio.gather(*(b.submit([i], [1]) for i in range(6)))
        await b.aclose()

    asyncio.run(main())
    assert most[0] == 1
