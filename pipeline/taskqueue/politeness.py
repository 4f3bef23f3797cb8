"""Politeness per host, shared by every worker thread, process and machine through Redis.

Three rules for the requests newsrec sends to one host (article pages and their robots.txt):

* at most `max_concurrent` at once: a sorted set of leases, each scored by when it ends, so the slot
  of a worker killed mid-fetch frees itself when its lease runs out;
* at least `min_interval_ms` between two starts;
* none while the host is paused: a 429 or 503 with Retry-After pauses the whole host, not one URL.

One Lua script decides and takes a slot atomically on Redis's own clock (TIME), so machines whose
clocks disagree still space their requests correctly. A caller that cannot get a slot within
`max_wait_seconds` gets HostBusy saying how long to put the work off, rather than holding a worker
thread for minutes behind a long queue for one site.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

from pipeline.taskqueue import redis_keys

# KEYS: requests, next start, paused. ARGV: token, max concurrent, min interval ms, lease ms.
# Returns 0 when the slot is taken, else the milliseconds worth waiting before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = tonumber(redis.call('GET', KEYS[3]) or '0')
if paused > now then return paused - now end
local next_start = tonumber(redis.call('GET', KEYS[2]) or '0')
if next_start > now then return next_start - now end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    -- A slot frees when a request ends, which nobody announces: ask again soon (at most at its lease end).
    return math.max(1, math.min(100, tonumber(first[2]) - now))
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[2], now + tonumber(ARGV[3]), 'PX', tonumber(ARGV[3]))
end
return 0
"""
# KEYS: paused. ARGV: pause ms. Only ever lengthens a pause.
_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ms > current then redis.call('SET', KEYS[1], until_ms, 'PX', tonumber(ARGV[1])) end
return until_ms - now
"""


class HostBusy(Exception):
    """No slot for the host within the wait allowed; `retry_in` (seconds) says when to try again."""

    def __init__(self, host: str, retry_in: float) -> None:
        super().__init__(f"{host} is busy or paused: try again in {retry_in:.1f} s")
        self.host = host
        self.retry_in = retry_in


@dataclass(frozen=True)
class HostPoliteness:
    client: redis.Redis
    max_concurrent: int = 2
    min_interval_ms: int = 1000
    max_wait_seconds: float = 20
    # How long a request may hold its slot: longer than any fetch (the fetcher's total timeout, twice
    # for robots.txt and the page); a worker that dies mid-fetch gives its slot back when it ends.
    lease_ms: int = 70_000
    max_pause_seconds: float = 3600

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of the host's request slots for the duration of the block; raises HostBusy."""
        token = uuid.uuid4().hex
        keys = [redis_keys.host_requests(host), redis_keys.host_next_start(host), redis_keys.host_paused(host)]
        args: list[str | int] = [token, max(1, self.max_concurrent), max(0, self.min_interval_ms), self.lease_ms]
        deadline = time.monotonic() + self.max_wait_seconds
        while True:
            wait_ms = int(self.client.eval(_ACQUIRE, len(keys), *keys, *args))
            if wait_ms <= 0:
                break
            left = deadline - time.monotonic()
            if wait_ms / 1000 > left:
                raise HostBusy(host, max(wait_ms / 1000, 1.0))
            time.sleep(wait_ms / 1000)
        try:
            yield
        finally:
            self.client.zrem(keys[0], token)

    def pause(self, host: str, seconds: float) -> float:
        """Keep every worker off `host` for `seconds` (capped at max_pause_seconds); returns the pause."""
        ms = int(min(max(seconds, 0), self.max_pause_seconds) * 1000)
        if ms <= 0:
            return 0.0
        return int(self.client.eval(_PAUSE, 1, redis_keys.host_paused(host), ms)) / 1000

    def in_flight(self, host: str) -> int:
        """Requests to `host` holding a slot now (for the admin and tests)."""
        return int(self.client.zcard(redis_keys.host_requests(host)))
