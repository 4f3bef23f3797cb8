"""Every Redis client of newsrec is built here, from one description of where Redis is.

Either one Redis (`REDIS_URL`, the default) or a master found through Redis Sentinel
(`REDIS_SENTINELS`, `REDIS_SENTINEL_MASTER`): then each connection asks the Sentinels for the current
master when it connects, so after a failover new connections go to the promoted replica. The Dramatiq
broker, the results backend and Django's cache are built from settings by their libraries, so each gets
a small subclass (or pool class) here that takes the same keyword arguments; everything else reaches
Redis through the broker's client (`pipeline.taskqueue.broker.redis_client`).

During a failover the old master refuses connections (killed), times out (hung or cut off) or answers
READONLY (it came back as a replica). redis-py's Sentinel connections turn READONLY replies into
ConnectionError and rediscover the master on the next connect; Dramatiq's consumer only treats
ConnectionError as a lost connection, so FailoverRedisBroker's consumer treats the other two alike:
the consumer restarts, an ack is retried until the new master takes it, instead of being dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed
from dramatiq.results.backends.redis import RedisBackend
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.buffer import BUFFER

# The Sentinels answer "where is the master" from memory: a Sentinel that takes longer is down.
SENTINEL_TIMEOUT_SECONDS = 1.0


def _connection_kwargs(url: str, password: str) -> dict[str, Any]:
    """Connection options from `url` (db, credentials, timeouts, TLS) without its host and port, which
    the Sentinels supply. `password` (REDIS_PASSWORD) is used when the URL carries none."""
    kwargs = parse_url(url)
    kwargs.pop("host", None)
    kwargs.pop("port", None)
    connection_class = kwargs.pop("connection_class", None)
    if connection_class is UnixDomainSocketConnection:
        raise ValueError("REDIS_SENTINELS needs a redis:// or rediss:// REDIS_URL, not a unix socket")
    if connection_class is SSLConnection:
        kwargs["connection_class"] = SentinelManagedSSLConnection
    if password and not kwargs.get("password"):
        kwargs["password"] = password
    return kwargs


def sentinel_for(sentinels: Sequence[Sequence[Any]], sentinel_password: str = "") -> Sentinel:
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT_SECONDS,
        "socket_connect_timeout": SENTINEL_TIMEOUT_SECONDS,
    }
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    return Sentinel([(str(host), int(port)) for host, port in sentinels], sentinel_kwargs=sentinel_kwargs)


def redis_client_for(
    url: str,
    *,
    sentinels: Sequence[Sequence[Any]] = (),
    sentinel_master: str = "",
    sentinel_password: str = "",
    password: str = "",
) -> redis.Redis:
    """A client on `url`, or, with `sentinels`, on the master they name `sentinel_master`, using
    `url`'s database, credentials and socket timeouts."""
    if not sentinels:
        if password and not parse_url(url).get("password"):
            return redis.Redis.from_url(url, password=password)
        return redis.Redis.from_url(url)
    sentinel = sentinel_for(sentinels, sentinel_password)
    return sentinel.master_for(sentinel_master, **_connection_kwargs(url, password))


@contextmanager
def _failover_is_a_lost_connection(client: redis.Redis) -> Iterator[None]:
    """Raise Dramatiq's ConnectionClosed for a timeout or a READONLY reply as for a refused connection."""
    try:
        yield
    except redis.TimeoutError as error:
        raise ConnectionClosed(error) from None
    except redis.ResponseError as error:
        # A Lua script writing on a demoted master: the reply names READONLY inside the script's error,
        # which redis-py's Sentinel connection does not recognise. Drop idle connections so the next
        # one asks the Sentinels again.
        if "READONLY" not in str(error):
            raise
        client.connection_pool.disconnect(inuse_connections=False)
        raise ConnectionClosed(error) from None


# Dramatiq's "ack" (dramatiq/brokers/redis/dispatch.lua) for many messages of one queue in one call:
# a message leaves the worker's ack set, and its body goes once it was there (not re-delivered meanwhile).
_ACK_MANY = """
local acked = 0
for _, message_id in ipairs(ARGV) do
    if redis.call("srem", KEYS[1], message_id) > 0 then
        redis.call("hdel", KEYS[2], message_id)
        acked = acked + 1
    end
end
return acked
"""


class _FailoverConsumer(_RedisConsumer):
    def ack(self, message: Any) -> None:
        # Redis forgets a message once acknowledged, so its final task record must be in Postgres first.
        # In a worker process the record writer's thread sends the acks its write released, in one
        # call, and the worker thread takes its next message meanwhile: waiting here for each commit
        # held a worker's drain rate to (threads / commit latency), whatever the machine's speed.
        # Done with here: the consumer may prefetch another in its place while the ack waits.
        self.queued_message_ids.discard(message.message_id)
        BUFFER.call_after_write(message.message_id, message.options["redis_message_id"], self._ack_many)

    def _ack_many(self, redis_message_ids: list[str]) -> None:
        client = self.broker.client
        with _failover_is_a_lost_connection(client):
            client.eval(
                _ACK_MANY,
                2,
                redis_keys.worker_acks(self.broker.broker_id, self.queue_name),
                redis_keys.queue_messages(self.queue_name),
                *redis_message_ids,
            )

    def nack(self, message: Any) -> None:
        with _failover_is_a_lost_connection(self.broker.client):
            super().nack(message)

    def requeue(self, messages: Any) -> None:
        with _failover_is_a_lost_connection(self.broker.client):
            super().requeue(messages)

    def __next__(self) -> Any:
        with _failover_is_a_lost_connection(self.broker.client):
            return super().__next__()


# The connection options settings.REDIS_CONNECTION gives the broker and the results backend beside `url`.
_CONNECTION_OPTIONS = ("sentinels", "sentinel_master", "sentinel_password", "password")


def _client_from_options(url: str, options: dict[str, Any]) -> redis.Redis:
    """The client for a broker or backend: takes the connection options out of `options`, leaving Dramatiq's own."""
    connection = {key: options.pop(key) for key in _CONNECTION_OPTIONS if key in options}
    return redis_client_for(url, **connection)


class FailoverRedisBroker(RedisBroker):
    """Dramatiq's Redis broker on a client from redis_client_for, whose consumers outlive a failover.

    `idle_poll_ms` caps how long an idle consumer sleeps between two looks at its queue. Dramatiq's Redis
    consumer polls (no blocking pop) and backs off exponentially up to the worker's timeout, 1 s: a
    message sent to a worker that had been idle a few seconds waited ~0.4 s before it was taken (the
    sweep of `make bench BENCH=scraping`), and each step of a chain (sweep, scrape, process) could wait
    that again. An idle look is one short Lua script; at the 100 ms default a consumer makes about 13 a
    second (Dramatiq jitters each sleep to 50-100 % of the cap)."""

    def __init__(self, *, url: str, idle_poll_ms: int | None = None, **options: Any) -> None:
        super().__init__(client=_client_from_options(url, options), **options)
        self.idle_poll_ms = idle_poll_ms

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> Any:
        if self.idle_poll_ms is not None:
            timeout = min(timeout, self.idle_poll_ms)
        return super().consume(queue_name, prefetch, timeout)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return _FailoverConsumer


class FailoverRedisBackend(RedisBackend):
    """Dramatiq's Redis results backend on a client from redis_client_for."""

    def __init__(self, *, url: str, **options: Any) -> None:
        super().__init__(client=_client_from_options(url, options), **options)


class SentinelCachePool(SentinelConnectionPool):
    """The `pool_class` of Django's Redis cache with Sentinel: Django calls `from_url(LOCATION, **OPTIONS)`
    with the cache's own OPTIONS (its short timeouts, the parser), plus the Sentinel ones popped here."""

    @classmethod
    def from_url(  # type: ignore[override]
        cls,
        url: str,
        *,
        sentinels: Sequence[Sequence[Any]],
        sentinel_master: str,
        sentinel_password: str = "",
        password: str = "",
        **options: Any,
    ) -> SentinelCachePool:
        kwargs = {**_connection_kwargs(url, password), **options}
        return cls(sentinel_master, sentinel_for(sentinels, sentinel_password), **kwargs)
