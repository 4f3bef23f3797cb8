"""What the broker still holds, so a sweep can tell a lost message from one that is only waiting."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import dq_name
from dramatiq.errors import DecodeError

from pipeline.taskqueue import redis_keys

logger = logging.getLogger(__name__)


def article_ids_in_queue(broker: dramatiq.Broker, *, queue_name: str, actor_name: str) -> set[int] | None:
    """Ids of the articles named by `actor_name` messages that `queue_name` holds, or None if unknown.

    Dramatiq's Redis broker keeps every message of a queue in one hash (`<ns>:<queue>.msgs`) from
    enqueue until it is acknowledged: waiting, being worked on by a live or a dead worker, or (in the
    delay queue) waiting for a retry. Dead-lettered messages have left it. So an article claimed for
    processing whose id is not in any of these messages was lost — with Redis itself, for instance.
    None (not a Redis broker, or Redis unreachable) means the caller has to guess from age.
    """
    if not isinstance(broker, RedisBroker):
        return None
    ids: set[int] = set()
    try:
        for queue in (queue_name, dq_name(queue_name)):
            for _, data in broker.client.hscan_iter(redis_keys.queue_messages(queue), count=1000):
                try:
                    message = dramatiq.Message.decode(data)
                except DecodeError:
                    continue
                if message.actor_name == actor_name and message.args:
                    ids.update(_ints(message.args[0]))
    except redis.RedisError:
        logger.warning("cannot read queue %s from the broker", queue_name, exc_info=True)
        return None
    return ids


def _ints(values: object) -> Iterable[int]:
    if not isinstance(values, list):
        return ()
    return (value for value in values if isinstance(value, int))
