"""GroupCommitter: concurrent usage records share one transaction per window, and each caller waits for
(and shares the fate of) the commit of its batch."""

from __future__ import annotations

import asyncio
import time

from modelshop.billing.committer import GroupCommitter


def test_group_commit_one_transaction_per_window_and_replies_wait_for_it():
    written: list[list[int]] = []

    def write(batch):
        time.sleep(0.01)                                        # a commit takes a while
        written.append(batch)
        return [x * 2 for x in batch]

    committer = GroupCommitter(write, window_s=0.005, max_batch=100)

    async def go():
        first = await asyncio.gather(*[committer.submit(i) for i in range(250)])
        one = await committer.submit(7)
        return first, one

    results, one = asyncio.run(go())
    assert results == [i * 2 for i in range(250)] and one == 14
    assert [len(b) for b in written] == [100, 100, 50, 1]


def test_a_failed_commit_fails_every_caller_of_its_batch():
    def write(batch):
        raise RuntimeError("disk full")

    committer = GroupCommitter(write, window_s=0.001, max_batch=10)

    async def go():
        return await asyncio.gather(*[committer.submit(i) for i in range(3)], return_exceptions=True)

    assert [str(e) for e in asyncio.run(go())] == ["disk full"] * 3
