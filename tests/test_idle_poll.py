"""An idle worker looks at its queue at least every DRAMATIQ_IDLE_POLL_MS (real Redis, the project's broker).

Dramatiq's Redis consumer polls and, while its queue stays empty, sleeps longer after each empty look, up
to the worker's timeout (1 s): a message sent to a worker idle for a few seconds waited up to a second to
start. The broker caps that sleep; this watches the sleeps an idle consumer asks for."""

from __future__ import annotations

import dramatiq.brokers.redis as dramatiq_redis
import pytest
from django.conf import settings

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_broker

QUEUE = "idle-poll-test"


@pytest.fixture
def sleeps(monkeypatch):
    """The sleeps Dramatiq's Redis consumer asks for (in seconds), recorded instead of slept."""
    asked: list[float] = []
    monkeypatch.setattr(dramatiq_redis.time, "sleep", asked.append)
    return asked


def idle_looks(timeout_ms: int, looks: int) -> int:
    broker = redis_broker()
    broker.declare_queue(QUEUE)
    broker.client.delete(redis_keys.queue_list(QUEUE))
    consumer = broker.consume(QUEUE, prefetch=1, timeout=timeout_ms)
    try:
        for _ in range(looks):
            assert next(consumer) is None  # the queue is empty: one look at Redis, then a sleep
    finally:
        consumer.close()
    return consumer.timeout


def test_an_idle_consumer_never_sleeps_longer_than_the_idle_poll(sleeps):
    # 30 empty looks: Dramatiq's back-off doubles from 5 ms and reaches any cap below 5 s by the 11th.
    timeout = idle_looks(1000, 30)  # the worker's default timeout: 1 s
    cap = settings.DRAMATIQ_IDLE_POLL_MS
    assert timeout == cap == 100
    assert len(sleeps) == 30
    assert max(sleeps) <= cap / 1000
    assert max(sleeps[-10:]) >= cap / 2000  # backed off to the cap (jittered 50-100 %), not polling flat out


def test_a_shorter_worker_timeout_is_kept(sleeps):
    timeout = idle_looks(20, 12)
    assert timeout == 20 and max(sleeps) <= 0.02
