"""Dead-lettered messages in Redis: list them and put them back on their queues.

Dramatiq's Redis broker (dramatiq/brokers/redis/dispatch.lua, "nack") moves a rejected message —
retries exhausted, an error retrying cannot fix, an unknown actor, or skipped by its age limit — to
`<namespace>:<queue>.XQ`, a sorted set of broker-internal message ids scored by when they were
dead-lettered, with the bodies in the hash `<namespace>:<queue>.XQ.msgs`. Dramatiq deletes them
after `dead_message_ttl` (7 days).

A requeued message keeps its message id (its task record moves on to a new attempt), gets a fresh
set of retries and a fresh timestamp (or its age limit would skip it again at once).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.common import q_name

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_client, text
from pipeline.taskqueue.middleware import record_transition
from pipeline.taskqueue.names import ATTEMPT_OFFSET_OPTION, Status
from pipeline.taskqueue.rows import message_attempt

# Moves one message from the dead-letter set onto its queue, atomically: of two operators requeuing
# the same message at once, one moves it and the other finds it gone (no duplicate, no loss).
_MOVE = """
if redis.call("zrem", KEYS[1], ARGV[1]) == 0 then
    return 0
end
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("hset", KEYS[3], ARGV[2], ARGV[3])
redis.call("rpush", KEYS[4], ARGV[2])
return 1
"""


@dataclass
class DeadLetter:
    queue_name: str
    broker_id: str  # the broker-internal id (redis_message_id), not the task id
    dead_lettered_at: datetime
    message: dramatiq.Message | None  # None when the body cannot be decoded

    @property
    def message_id(self) -> str:
        return self.message.message_id if self.message else ""


def _keys(queue_name: str) -> tuple[str, str]:
    xq = redis_keys.dead_letters(queue_name)
    return xq, xq + ".msgs"


def dead_letter_queues(broker: dramatiq.Broker | None = None) -> list[str]:
    """Declared queues plus any queue that has dead letters in Redis (e.g. of an actor since removed)."""
    broker = broker or dramatiq.get_broker()
    names = {q_name(q) for q in broker.get_declared_queues()}
    for key in redis_client(broker).scan_iter(match=redis_keys.dead_letter_pattern(), count=500):
        names.add(redis_keys.queue_of_dead_letter_key(key.decode() if isinstance(key, bytes) else key))
    return sorted(names)


def count_dead_letters(queue_name: str, broker: dramatiq.Broker | None = None) -> int:
    broker = broker or dramatiq.get_broker()
    return redis_client(broker).zcard(_keys(queue_name)[0])


def list_dead_letters(
    queue_name: str | None = None, *, limit: int | None = None, broker: dramatiq.Broker | None = None
) -> list[DeadLetter]:
    """Dead letters of one queue (or all), oldest first, up to `limit` per queue."""
    broker = broker or dramatiq.get_broker()
    letters: list[DeadLetter] = []
    for queue in [queue_name] if queue_name else dead_letter_queues(broker):
        xq, xq_msgs = _keys(queue)
        end = -1 if limit is None else limit - 1
        client = redis_client(broker)
        entries: list[Any] = client.zrange(xq, 0, end, withscores=True)  # (broker id, score) pairs
        if not entries:
            continue
        bodies: list[Any] = client.hmget(xq_msgs, [broker_id for broker_id, _ in entries])
        for (broker_id, score), body in zip(entries, bodies, strict=True):
            letters.append(
                DeadLetter(
                    queue_name=q_name(queue),
                    broker_id=text(broker_id),
                    dead_lettered_at=datetime.fromtimestamp(score / 1000, UTC),
                    message=_decode(body),
                )
            )
    return letters


def _decode(body: bytes | None) -> dramatiq.Message | None:
    if body is None:
        return None
    try:
        return dramatiq.Message.decode(body)
    except Exception:  # noqa: BLE001 - a corrupt body is listed, never requeued
        return None


def requeue_dead_letters(
    queue_name: str | None = None,
    message_ids: Iterable[str] | None = None,
    *,
    broker: dramatiq.Broker | None = None,
) -> list[str]:
    """Put dead-lettered messages back on their queues: all of one queue (or of every queue), or only
    those with the given task ids. Returns the task ids requeued. Their records say "enqueued" again
    at the next attempt number once this process flushes its task records."""
    broker = broker or dramatiq.get_broker()
    wanted = set(message_ids) if message_ids is not None else None
    move = redis_client(broker).register_script(_MOVE)
    requeued: list[str] = []
    for letter in list_dead_letters(queue_name, broker=broker):
        message = letter.message
        if message is None or (wanted is not None and message.message_id not in wanted):
            continue
        queue = q_name(message.queue_name)
        options = {k: v for k, v in message.options.items() if k not in {"eta", "retries", "redis_message_id"}}
        options[ATTEMPT_OFFSET_OPTION] = message_attempt(message)
        options["redis_message_id"] = str(uuid.uuid4())
        fresh: dramatiq.Message[Any] = dramatiq.Message(
            queue_name=queue,
            actor_name=message.actor_name,
            args=message.args,
            kwargs=message.kwargs,
            options=options,
            message_id=message.message_id,
            message_timestamp=int(time.time() * 1000),
        )
        xq, xq_msgs = _keys(letter.queue_name)
        moved = move(
            keys=[xq, xq_msgs, redis_keys.queue_messages(queue), redis_keys.queue_list(queue)],
            args=[letter.broker_id, options["redis_message_id"], fresh.encode()],
        )
        if moved:
            record_transition(fresh, Status.ENQUEUED)
            requeued.append(message.message_id)
    return requeued


def queue_keys(queue_name: str) -> dict[str, str]:
    """The Redis keys of a queue, its delay queue and its dead letters (see the module docstring)."""
    return {
        "ready": redis_keys.queue_list(q_name(queue_name)),
        "messages": redis_keys.queue_messages(q_name(queue_name)),
        "delayed": redis_keys.delayed_messages(queue_name),
        "dead": redis_keys.dead_letters(queue_name),
    }
