"""Actors that only the task-record tests load (worker subprocesses import this module by name)."""

from __future__ import annotations

import time

import django

django.setup()

import dramatiq  # noqa: E402

QUEUE = "records-test"
broker = dramatiq.get_broker()  # `dramatiq tests.support.record_actors` reads the broker from here


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def echo(value: object) -> dict[str, object]:
    return {"echo": value}


@dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=100, max_backoff=100, time_limit=60_000)
def always_fails(token: str) -> None:
    raise RuntimeError(f"{token} fails every time")


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=120_000)
def sleep_then_echo(seconds: float, value: object) -> dict[str, object]:
    time.sleep(seconds)
    return {"echo": value}


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def returns_unserialisable() -> object:
    return {1, 2, 3}  # a set: not JSON


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def returns_huge() -> str:
    return "x" * 1_000_000


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def mark(key: str, value: str) -> None:
    """Leave a trace in Redis, outside the task records: a test sees the message ran whatever Postgres does."""
    broker.client.sadd(key, value)  # type: ignore[attr-defined]
