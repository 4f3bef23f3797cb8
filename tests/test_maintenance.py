"""Queue maintenance on a clock: a dead worker's unacknowledged messages go back on their queue when a
live worker asks for maintenance, without waiting for the broker's random chance (real Redis)."""

from __future__ import annotations

import time

import dramatiq
import pytest

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_broker
from pipeline.taskqueue.maintenance import force_maintenance

QUEUE = "maintenance-test"


@pytest.fixture
def broker():
    broker = redis_broker()
    broker.declare_queue(QUEUE)
    broker.client.delete(redis_keys.queue_list(QUEUE), redis_keys.queue_messages(QUEUE))
    yield broker
    broker.client.delete(redis_keys.queue_list(QUEUE), redis_keys.queue_messages(QUEUE))


def fetch_as(broker, worker_id: str, at_ms: int) -> list[bytes]:
    """What a worker's consumer does: take messages off the queue into its own acks set."""
    return broker.scripts["dispatch"](
        args=["fetch", at_ms, QUEUE, worker_id, broker.heartbeat_timeout, broker.dead_message_ttl, 0, 1000, 10],
        keys=[broker.namespace],
    )


def test_a_dead_workers_message_is_requeued_by_forced_maintenance(broker):
    message = dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(), kwargs={}, options={})
    broker.enqueue(message)
    long_ago = int(time.time() * 1000) - broker.heartbeat_timeout - 60_000
    assert len(fetch_as(broker, "dead-worker", long_ago)) == 1  # held by a worker whose heartbeat is old
    assert broker.client.llen(redis_keys.queue_list(QUEUE)) == 0

    force_maintenance(broker, QUEUE)

    assert broker.client.llen(redis_keys.queue_list(QUEUE)) == 1
    assert broker.client.scard(f"{broker.namespace}:__acks__.dead-worker.{QUEUE}") == 0


def test_a_live_workers_message_stays_with_it(broker):
    message = dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(), kwargs={}, options={})
    broker.enqueue(message)
    assert len(fetch_as(broker, "live-worker", int(time.time() * 1000))) == 1

    force_maintenance(broker, QUEUE)

    assert broker.client.llen(redis_keys.queue_list(QUEUE)) == 0
    broker.client.delete(f"{broker.namespace}:__acks__.live-worker.{QUEUE}")
