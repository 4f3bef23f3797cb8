"""Sending messages after the surrounding transaction commits, with the id known up front."""

from __future__ import annotations

from typing import Any

import dramatiq
from django.db import transaction

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_client


def send_on_commit(actor: dramatiq.Actor, *args: Any, origin: str, **kwargs: Any) -> str:
    """Queue `actor(*args, **kwargs)` once the current transaction commits; returns the message id.

    Outside a transaction the message is sent at once, so a broker outage raises here (the API turns
    that into 503). `origin` says who asked (api, scheduler, pipeline, admin, command) for the records.
    """
    message = actor.message_with_options(args=args, kwargs=kwargs, origin=origin)
    transaction.on_commit(lambda: actor.broker.enqueue(message), robust=False)
    return message.message_id


def send_coalesced_on_commit(actor: dramatiq.Actor, *, flag: str, delay_seconds: int, origin: str) -> None:
    """After the current transaction commits, queue `actor()` in `delay_seconds` unless a message sent
    this way is already waiting: the first request of a burst sends, the rest find the Redis flag set.

    The actor calls clear_coalescing_flag(flag) before it reads its inputs, so a request arriving while
    it runs queues the next run. The flag expires, so a lost message only delays the work to the next
    request (or the next scheduled run).
    """

    def send() -> None:
        key = redis_keys.send_requested(flag)
        if redis_client(actor.broker).set(key, "1", nx=True, ex=max(delay_seconds * 4, 60)):
            actor.send_with_options(delay=delay_seconds * 1000, origin=origin)

    transaction.on_commit(send, robust=True)


def clear_coalescing_flag(broker: dramatiq.Broker, flag: str) -> None:
    client = getattr(broker, "client", None)
    if client is not None:
        client.delete(redis_keys.send_requested(flag))
