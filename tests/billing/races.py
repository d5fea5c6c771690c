"""Two calls driven into the stale-read race at a chosen statement, with SQLAlchemy's engine events.

`race(engine, after, first, second)` runs the two calls in two threads. When the statement that
contains `after` has returned in a thread, that thread meets the other at a barrier; one of them
then goes on to finish its call while the other waits for it before acting on what it read: the
interleaving that breaks a read-then-write flow, made certain instead of left to luck. Code that
locks what it reads keeps the second thread from reaching the statement at all: the barrier times
out and the calls take turns, as they should. Nothing of the project is replaced; the hooks only
pause threads between real statements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine, event

BARRIER_S = 1.0   # how long a thread waits for the other to reach the same statement


def race(engine: Engine, after: str, *calls: Callable[[], object]) -> list:
    """Run `calls` (two) at once as described above; returns each call's result or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    finished = threading.Event()
    local = threading.local()
    needle = " ".join(after.split()).lower()

    def after_execute(_conn, _cursor, statement, *_args) -> None:
        if getattr(local, "hit", True) or needle not in " ".join(statement.split()).lower():
            return
        local.hit = True
        try:
            index = barrier.wait(timeout=BARRIER_S)
        except threading.BrokenBarrierError:  # the other is held by a lock (or done): no race to set up
            return
        if index != 0:
            finished.wait(timeout=30)

    results: list = [None] * len(calls)

    def run(i: int, call: Callable[[], object]) -> None:
        local.hit = False
        try:
            results[i] = call()
        except Exception as e:  # the caller asserts on what each call raised
            results[i] = e
        finally:
            finished.set()

    event.listen(engine, "after_cursor_execute", after_execute)
    try:
        threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        event.remove(engine, "after_cursor_execute", after_execute)
    return results
