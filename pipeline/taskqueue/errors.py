"""Broker failures as one exception the API can answer with 503."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq.errors
import redis.exceptions


class QueueUnavailable(Exception):
    pass


@contextmanager
def queue_errors_as_unavailable() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.RedisError, dramatiq.errors.BrokerConnectionError) as error:
        raise QueueUnavailable(f"task queue unavailable, try again shortly ({type(error).__name__})") from error
