"""A Dramatiq worker inside the test process, stopped and detached from the broker afterwards.

`dramatiq.Worker` registers a middleware on the broker that starts a consumer whenever a queue is
declared. `Worker.stop()` stops the threads but leaves that middleware behind, so a stopped test
worker would start consuming any queue a later test declares (tests/test_maintenance.py lost its
message that way in CI). Removing the middleware on exit keeps each test's worker inside its test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq


@contextmanager
def in_process_worker(broker: dramatiq.Broker) -> Iterator[dramatiq.Worker]:
    before = list(broker.middleware)
    worker = dramatiq.Worker(broker, worker_timeout=100, worker_threads=1)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        broker.middleware[:] = [m for m in broker.middleware if m in before]
