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

    Dramatiq's Redis broker keeps every message body of a queue in one hash (`<ns>:<queue>.msgs`) from
    enqueue until it is acknowledged, and its id either on the queue's list (waiting) or in the ack set
    of the worker that fetched it (being worked on, by a live or a dead worker); the delay queue, where a
    retry waits, has the same three. Dead-lettered messages have left them. So an article claimed for
    processing whose id is in none of these messages was lost, with Redis itself for instance.

    A body that is on no list and in no ack set is lost too: no worker will ever fetch it, and its
    acknowledgement, which only deletes bodies of messages in the acker's set, will never remove it. A
    Sentinel failover can leave one (a frozen master that woke and ran commands before it was demoted),
    and counting it as queued held its articles back for good.
    None (not a Redis broker, or Redis unreachable) means the caller has to guess from age.
    """
    if not isinstance(broker, RedisBroker):
        return None
    ids: set[int] = set()
    try:
        for queue in (queue_name, dq_name(queue_name)):
            live = _fetchable_or_held(broker.client, queue)
            for redis_id, data in broker.client.hscan_iter(redis_keys.queue_messages(queue), count=1000):
                if redis_id not in live:
                    continue
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


def _fetchable_or_held(client: redis.Redis, queue: str) -> set[bytes | str]:
    """Broker ids on `queue`'s list or in any worker's ack set for it.

    The list is read before the ack sets: a message fetched in between (list to ack set, the common
    move) is then seen in its set. A message moved the other way meanwhile (requeued at a worker's
    shutdown) is missed, and its articles are sent once more if their claim is past the grace: a
    redundant message, which changes nothing (process_articles touches only rows pending for its claim).
    A body enqueued after the list was read belongs to a claim younger than the grace, left alone anyway.
    """
    live: set[bytes | str] = set(client.lrange(redis_keys.queue_list(queue), 0, -1))
    for key in client.scan_iter(redis_keys.worker_acks_pattern(queue), count=1000):
        live.update(client.smembers(key))
    return live


def _ints(values: object) -> Iterable[int]:
    if not isinstance(values, list):
        return ()
    return (value for value in values if isinstance(value, int))
