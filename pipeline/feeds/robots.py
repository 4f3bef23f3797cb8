"""robots.txt for article pages (RFC 9309), parsed with protego and kept per host for a while.

Feeds are fetched whatever robots.txt says (a feed is published to be polled); article pages are
crawled, so they follow the site's rules. Each worker process keeps the answer for a host for
ROBOTS_CACHE_SECONDS: a burst of fetches from one site asks for its robots.txt once.

What the RFC asks when robots.txt cannot be read: a 4xx (404 above all) means no rules, everything
is allowed; a 5xx or a network failure means the site cannot say, so nothing may be fetched for
now: RobotsUnavailable, which the caller treats as a failure worth retrying, not as a refusal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

import httpx
from protego import Protego

from pipeline.feeds.fetching import FetchError, fetch_feed

__all__ = ["RobotsCache", "RobotsUnavailable", "robots_url"]

# RFC 9309 2.5: crawlers must parse at least 500 KiB; anything past that may be ignored.
MAX_ROBOTS_BYTES = 512 * 1024
_CACHE_LIMIT = 10_000  # hosts; the oldest entries go first when full


class RobotsUnavailable(Exception):
    """robots.txt could not be read (5xx, network): the page may not be fetched yet; retry later."""


def robots_url(page_url: str) -> str:
    url = httpx.URL(page_url)
    return str(url.copy_with(path="/robots.txt", query=None, fragment=None))


class RobotsCache:
    """Whether a page may be fetched, with each host's parsed rules kept for `ttl_seconds`."""

    def __init__(self, ttl_seconds: float = 3600, fetch: Callable[..., object] = fetch_feed) -> None:
        self._ttl = ttl_seconds
        self._fetch = fetch
        self._lock = threading.Lock()
        self._rules: dict[str, tuple[float, Protego | None]] = {}

    def can_fetch(
        self,
        page_url: str,
        user_agent: str,
        *,
        allowed_private_hosts: Collection[str] = (),
        connect_timeout: float = 10,
        total_timeout: float = 30,
    ) -> bool:
        """True when the host's robots.txt lets `user_agent` fetch `page_url`; raises RobotsUnavailable."""
        location = robots_url(page_url)
        now = time.monotonic()
        with self._lock:
            cached = self._rules.get(location)
        if cached is None or cached[0] < now:
            rules = self._load(
                location,
                user_agent,
                allowed_private_hosts=allowed_private_hosts,
                connect_timeout=connect_timeout,
                total_timeout=total_timeout,
            )
            with self._lock:
                if len(self._rules) >= _CACHE_LIMIT:
                    self._rules.pop(next(iter(self._rules)))
                self._rules[location] = (now + self._ttl, rules)
        else:
            rules = cached[1]
        return rules is None or bool(rules.can_fetch(page_url, user_agent))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def _load(self, location: str, user_agent: str, **fetch_options: object) -> Protego | None:
        """The parsed rules, or None when the site has none (any 4xx)."""
        try:
            fetched = self._fetch(
                location, user_agent=user_agent, accept="text/plain", max_bytes=MAX_ROBOTS_BYTES, **fetch_options
            )
        except FetchError as error:
            if error.status is not None and 400 <= error.status < 500:
                return None
            raise RobotsUnavailable(f"robots.txt unavailable: {error.reason}") from None
        content = getattr(fetched, "content", b"")
        return Protego.parse(content.decode("utf-8", errors="replace"))
