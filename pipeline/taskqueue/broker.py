"""The Redis broker of this process, typed: newsrec runs Dramatiq on Redis, whose keys it reads itself
(queues, dead letters, heartbeats, schedules)."""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker


def redis_broker(broker: dramatiq.Broker | None = None) -> RedisBroker:
    broker = broker or dramatiq.get_broker()
    if not isinstance(broker, RedisBroker):
        raise TypeError(f"newsrec needs Dramatiq's Redis broker, not {type(broker).__name__}")
    return broker


def redis_client(broker: dramatiq.Broker | None = None) -> redis.Redis:
    """The broker's client: one connection pool per process, on the Redis the queues are in."""
    return redis_broker(broker).client


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value
