"""Clearing the Django cache without touching the queues."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache


def clear_cache_entries() -> None:
    """Delete this namespace's cache entries (throttle counters among them) and nothing else.

    Django's `cache.clear()` is FLUSHDB on Redis: the cache shares the broker's database, so it would
    drop every queue in it, other test runs' and other processes' included.
    """
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    prefix = settings.CACHES["default"]["KEY_PREFIX"]
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
