"""Keep-alive connections for feed fetches: one transport per allow-list and process, one short list of
idle connections per origin, every connection opened through the SSRF guard (address_guard).

A feed reader polls many feeds on few hosts, and a new connection per poll cost a TCP (and for https a
TLS) handshake every time. A pooled connection was vetted when it was opened, under the same policy;
what it carries over from one fetch to the next is only the socket. The deadline is the fetch's, not the
connection's: every socket operation reads it from address_guard.fetch_context.
"""

from __future__ import annotations

import collections
import functools
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import httpcore
import httpx

from pipeline.feeds.address_guard import AddressPolicy, GuardedBackend

# Idle pooled connections are dropped after this long: below the shortest idle timeout common servers
# use (Apache's 5 s, gunicorn's 2 s), so a connection is rarely taken just as its server closes it. A
# batch polls its feeds within seconds, and that is where connections get reused.
KEEPALIVE_SECONDS = 1.5
# Idle connections a process keeps at most for one host, and for all hosts of one allow-list together.
MAX_IDLE_PER_HOST = 8
MAX_IDLE_CONNECTIONS = 32


@functools.cache
def shared_tls_context() -> ssl.SSLContext:
    """The TLS settings of every fetch, built once per process.

    Building one loads the CA bundle (certifi's ~150 certificates): ~40 ms of CPU, which, per fetch, was
    more than half of a scraping worker's busy time (benchmarks/bench_scraping.py profile). An SSLContext
    is safe to share between threads once configured, and nothing changes it after this function.
    """
    return httpx.create_ssl_context()


class GuardedTransport(httpx.BaseTransport):
    """The pooled connections of one allow-list: a pool per origin (scheme, host, port), each on
    `backend`, so every connection is opened through the guard.

    Per origin so that a request only looks at its host's few connections (_Connections). The origins
    are let go as their connections would be: a pool with nothing in flight for KEEPALIVE_SECONDS is
    closed, and past MAX_IDLE_CONNECTIONS over all origins the least recently used idle pools are
    closed first."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._origins: collections.OrderedDict[tuple[str, str, int | None], _Origin] = collections.OrderedDict()
        self._next_sweep = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        key = (request.url.scheme, request.url.host, request.url.port)
        with self._lock:
            origin = self._origins.get(key)
            if origin is None:
                origin = self._origins[key] = _Origin(self._pool())
            else:
                self._origins.move_to_end(key)
            origin.in_flight += 1
            self._let_go_idle(time.monotonic())
        try:
            response = origin.transport.handle_request(request)
        except BaseException:
            self._release(origin)
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)  # httpx.HTTPTransport's ResponseStream
        response.stream = _OnClose(response.stream, functools.partial(self._release, origin))
        return response

    def close(self) -> None:
        with self._lock:
            origins, self._origins = list(self._origins.values()), collections.OrderedDict()
        for origin in origins:
            origin.transport.close()

    def idle_connections(self) -> int:
        """Connections held open with no request on them, over every origin (for tests and the sweep)."""
        return sum(o.transport.pool.idle_count() for o in list(self._origins.values()))

    def _pool(self) -> _OriginTransport:
        return _OriginTransport(_Connections(self._backend))

    def _release(self, origin: _Origin) -> None:
        with self._lock:
            origin.in_flight -= 1
            origin.last_used = now = time.monotonic()
            self._let_go_idle(now)  # the connection just returned may be one too many

    def _let_go_idle(self, now: float) -> None:
        """Close the pools of origins with nothing in flight that have been idle for KEEPALIVE_SECONDS
        (their connections have expired), then, while more than MAX_IDLE_CONNECTIONS connections sit
        idle, the least recently used idle pools. Runs under the lock, as a request starts and ends:
        a full pass at most every tenth of KEEPALIVE_SECONDS while there are fewer origins than
        MAX_IDLE_CONNECTIONS, so a request's cost does not grow with the number of connections."""
        if now < self._next_sweep and len(self._origins) <= MAX_IDLE_CONNECTIONS:
            return
        self._next_sweep = now + KEEPALIVE_SECONDS / 10
        idle = [(key, o) for key, o in self._origins.items() if o.in_flight == 0]
        expired = [key for key, o in idle if now - o.last_used >= KEEPALIVE_SECONDS]
        for key in expired:
            self._origins.pop(key).transport.close()
        excess = self.idle_connections() - MAX_IDLE_CONNECTIONS
        for key, origin in idle:  # least recently used first
            if excess <= 0:
                break
            if key in self._origins:
                excess -= origin.transport.pool.idle_count()
                self._origins.pop(key).transport.close()


class _OriginTransport(httpx.HTTPTransport):
    """httpx's transport on a pool of ours (it offers no parameter for a network backend, and
    handle_request only uses self._pool.handle_request, stable in httpx 0.2x)."""

    def __init__(self, pool: _Connections) -> None:
        super().__init__(verify=shared_tls_context(), trust_env=False)
        self._pool = pool  # type: ignore[assignment]  # what httpx calls: handle_request and close

    @property
    def pool(self) -> _Connections:
        return self._pool  # type: ignore[return-value]


class _Connections:
    """One origin's keep-alive connections, in place of httpcore's ConnectionPool: a request takes the
    most recently used idle connection (checking only that one is still open) or opens a new one, and
    its connection comes back when the response is closed.

    httpcore's pool, on every request, walks all its connections under a lock and asks each idle one
    whether the server closed it: a poll() system call per connection, each letting go of the GIL and
    waiting to get it back behind the other poll threads. Doing without it cut a conditional GET's CPU
    by a quarter (0.67 -> 0.49 ms at 16 threads against the bench's feed server). No cap on connections
    in use (a fetch never waits for another's slow one); at most MAX_IDLE_PER_HOST kept idle."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._idle: list[httpcore.HTTPConnection] = []
        self._closed = False

    def handle_request(self, request: httpcore.Request) -> httpcore.Response:
        while True:
            connection = self._take(request.url.origin)
            try:
                response = connection.handle_request(request)
            except httpcore.ConnectionNotAvailable:
                # Closed between the check and the request: another one (at worst a new one).
                connection.close()
                continue
            except BaseException:
                connection.close()
                raise
            assert isinstance(response.stream, Iterable)
            response.stream = _OnClose(response.stream, functools.partial(self._give_back, connection))
            return response

    def idle_count(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _take(self, origin: httpcore.Origin) -> httpcore.HTTPConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return httpcore.HTTPConnection(
                    origin=origin,
                    ssl_context=shared_tls_context(),
                    keepalive_expiry=KEEPALIVE_SECONDS,
                    network_backend=self._backend,
                )
            # has_expired: past its keep-alive, or readable while idle (the server closed it).
            if connection.is_available() and not connection.has_expired():
                return connection
            connection.close()

    def _give_back(self, connection: httpcore.HTTPConnection) -> None:
        # Idle once the whole response was read (httpcore closes one left half read).
        if connection.is_idle() and not connection.is_closed():
            with self._lock:
                if not self._closed and len(self._idle) < MAX_IDLE_PER_HOST:
                    self._idle.append(connection)
                    return
        connection.close()


@dataclass
class _Origin:
    transport: _OriginTransport
    in_flight: int = 0  # requests sent whose response is not closed yet
    last_used: float = 0.0


class _OnClose(httpx.SyncByteStream):
    """A response body that calls `on_close` once it is closed: an origin's count of requests in flight
    (GuardedTransport) or a connection given back to its host's list (_Connections)."""

    def __init__(self, inner: Iterable[bytes], on_close: Callable[[], None]) -> None:
        self._inner = inner
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()


@functools.lru_cache(maxsize=16)
def _transport_for(allowed_private_hosts: tuple[str, ...]) -> GuardedTransport:
    return GuardedTransport(GuardedBackend(AddressPolicy(allowed_private_hosts)))


def pooled_transport(allowed_private_hosts: Collection[str]) -> GuardedTransport:
    """This process's transport for `allowed_private_hosts`: its connection pools (one per origin),
    shared by every thread's fetches (each connection serves one request at a time). Never closed: it lives as long
    as the process.

    Per policy, so a connection opened under a wider allow-list is never handed to a fetch with a
    narrower one. Created on first use, so after any fork. Idle connections are let go when the
    transport is next used, so one whose process stops fetching keeps at most MAX_IDLE_CONNECTIONS
    sockets."""
    hosts = (allowed_private_hosts,) if isinstance(allowed_private_hosts, str) else tuple(allowed_private_hosts)
    return _transport_for(hosts)
