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


def send_later(actor: dramatiq.Actor, *args: Any, delay_seconds: float, origin: str, **kwargs: Any) -> str:
    """Queue `actor(*args, **kwargs)` to run in `delay_seconds`, now (not on commit); returns the message id.

    For an actor putting its own work off (a busy host, a retry with its own backoff): the new message's
    id goes in the actor's result, so a caller following the chain follows it too.
    """
    message = actor.message_with_options(args=args, kwargs=kwargs, origin=origin)
    actor.broker.enqueue(message, delay=max(0, int(delay_seconds * 1000)))
    return message.message_id


def send_coalesced_now(actor: dramatiq.Actor, *, flag: str, delay_seconds: int, origin: str) -> str:
    """Like send_coalesced_on_commit, sent now, and returning the id of the message that will do the work:
    the one this call sent, or the one already waiting, whose id the flag holds."""
    client = redis_client(actor.broker)
    key = redis_keys.send_requested(flag)
    message = actor.message_with_options(origin=origin)
    waiting: bytes | str | None = None
    # Two tries: the waiting message may start (and clear the flag) between our SET and GET, and it then
    # reads the database after our commit, so the next message sent is the one to name.
    for _ in range(2):
        if client.set(key, message.message_id, nx=True, ex=max(delay_seconds * 4, 60)):
            actor.broker.enqueue(message, delay=delay_seconds * 1000)
            return message.message_id
        waiting = client.get(key)
        if waiting:
            break
    return waiting.decode() if isinstance(waiting, bytes) else str(waiting or "")
