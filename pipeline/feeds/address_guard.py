"""The SSRF guard of every fetch: resolve once, refuse non-public addresses, connect only to those checked.

Every TCP connection the client opens (the first URL and each redirect hop) goes through
`GuardedBackend.connect_tcp`, which resolves the host once, refuses when any resolved address is not
public, and then connects to exactly the addresses it checked. There is no second DNS lookup for a
rebinding attacker to answer differently. TLS still verifies the certificate against the hostname,
because httpcore passes the hostname (not the IP) to `start_tls`.

Wall-clock deadline: httpx timeouts apply to each socket operation, so a server that drips one byte
a second never trips them. `DeadlineStream` shrinks every read/write/handshake timeout to what is
left of the fetch's total budget, which also covers slow headers and slow TLS.

Connections are pooled per process and policy (`pooled_transport`): a feed reader polls many feeds on
few hosts, and a new connection per poll cost a TCP (and for https a TLS) handshake every time. A
pooled connection was vetted when it was opened, under the same policy; what it carries over from one
fetch to the next is only the socket. The deadline is the fetch's, not the connection's: every socket
operation reads it from `fetch_context`, which the fetch on this thread entered.

Tests fake DNS through the `_getaddrinfo` hook, never the system resolver.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx


class GuardError(Exception):
    """A readable refusal raised inside the transport; httpx passes unknown exceptions through unchanged."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def address_problem(ip: IPAddress) -> str | None:
    """Why a feed fetch must not connect to ``ip`` ("loopback", "private", ...), or None if it is public."""
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        # ::ffff:127.0.0.1, 6to4, Teredo and NAT64 forms reach the IPv4 address inside them.
        problem = address_problem(embedded)
        if problem:
            return problem
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),  # 224.0.1.0/24 and friends count as "global" in ipaddress
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for kind, flagged in checks:
        if flagged:
            return kind
    if not ip.is_global:
        return "non-public"  # e.g. 100.64.0.0/10 carrier-grade NAT
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _normalise_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


# "host:port" or "[v6]:port" in an allow-list: that host (or network) on that port only.
_WITH_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


class AddressPolicy:
    """Which resolved addresses a fetch may connect to.

    Entries are hostnames (matched exactly), IP addresses or CIDR networks, each optionally with a
    port ("127.0.0.1:8000", "[::1]:8000"): demo mode allows its own web server's port on loopback,
    not every loopback service (Redis, Postgres, a metrics endpoint).
    """

    def __init__(self, allowed_private_hosts: Collection[str]) -> None:
        if isinstance(allowed_private_hosts, str):  # a bare "localhost" would otherwise be split into letters
            allowed_private_hosts = (allowed_private_hosts,)
        self._hosts: set[tuple[str, int | None]] = set()
        self._networks: list[tuple[IPNetwork, int | None]] = []
        for entry in allowed_private_hosts:
            port: int | None = None
            if (with_port := _WITH_PORT.match(entry.strip())) is not None:
                entry, port = with_port.group("v6") or with_port.group("host"), int(with_port.group("port"))
            try:
                self._networks.append((ipaddress.ip_network(_normalise_host(entry), strict=False), port))
            except ValueError:
                self._hosts.add((_normalise_host(entry), port))

    def check(self, host: str, addresses: Iterable[IPAddress], port: int | None = None) -> None:
        """Raise GuardError when any address is non-public and not allow-listed (for this port)."""
        name = _normalise_host(host)
        if (name, None) in self._hosts or (port is not None and (name, port) in self._hosts):
            return
        for ip in addresses:
            problem = address_problem(ip)
            if problem is None or self._allows(ip, port):
                continue
            if name == _normalise_host(str(ip)):
                raise GuardError(f"refused: {ip} is a {problem} address")
            raise GuardError(f"refused: {host} resolves to {ip}, a {problem} address")

    def _allows(self, ip: IPAddress, port: int | None) -> bool:
        if any(ip.version == net.version and ip in net and allowed in (None, port) for net, allowed in self._networks):
            return True
        embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return embedded is not None and self._allows(embedded, port)


# Indirection so tests can fake DNS answers without touching the network.
_getaddrinfo = socket.getaddrinfo


def _resolve(host: str, port: int, timeout: float) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, giving up after ``timeout``.

    getaddrinfo cannot be interrupted, so it runs in a daemon thread: a hung
    resolver then costs a parked thread instead of blowing the fetch's deadline.
    """
    try:
        return [ipaddress.ip_address(_normalise_host(host))]
    except ValueError:
        pass

    outcome: dict[str, Any] = {}

    def lookup() -> None:
        try:
            outcome["infos"] = _getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise GuardError(f"DNS lookup for {host} timed out after {timeout:.0f} s")
    if "error" in outcome:
        exc = outcome["error"]
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise GuardError(f"DNS lookup failed for {host}: {detail}")

    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in outcome.get("infos", []):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise GuardError(f"DNS lookup for {host} returned no addresses")
    return addresses


# Idle pooled connections are dropped after this long: below the shortest idle timeout common servers
# use (Apache's 5 s, gunicorn's 2 s), so a connection is rarely taken just as its server closes it. A
# batch polls its feeds within seconds, and that is where connections get reused.
KEEPALIVE_SECONDS = 1.5
# Idle connections a process keeps at most for one host, and for all hosts of one allow-list together.
MAX_IDLE_PER_HOST = 8
MAX_IDLE_CONNECTIONS = 32


@dataclass
class FetchContext:
    deadline: float
    connections_opened: int = 0


_current: contextvars.ContextVar[FetchContext] = contextvars.ContextVar("fetch")


@contextlib.contextmanager
def fetch_context(deadline: float) -> Iterator[FetchContext]:
    """The fetch this thread runs: its wall-clock deadline, and how many connections it opened (so the
    fetcher can tell a pooled connection's failure from a fresh one's)."""
    token = _current.set(fetch := FetchContext(deadline))
    try:
        yield fetch
    finally:
        _current.reset(token)


def _fetch() -> FetchContext:
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("a guarded connection was used outside fetch_context()") from None


def _deadline() -> float:
    return _fetch().deadline


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, vets every address, then connects only to the vetted addresses.

    Connecting to the checked IP (rather than handing the hostname to the
    socket layer, which would resolve it again) closes the DNS-rebinding gap.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        _fetch().connections_opened += 1
        addresses = _resolve(host, port, _budget(_deadline(), timeout, httpcore.ConnectTimeout))
        self._policy.check(host, addresses, port)
        failure: Exception | None = None
        for ip in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=_budget(_deadline(), timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectTimeout as exc:
                failure = exc
                continue
            except httpcore.ConnectError as exc:
                failure = exc  # e.g. ::1 refused while 127.0.0.1 listens: try the next address
                continue
            return DeadlineStream(stream, host)
        if isinstance(failure, httpcore.ConnectTimeout):
            raise failure
        raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {_os_reason(failure)}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise GuardError("refused: unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class DeadlineStream(httpcore.NetworkStream):
    """Caps every socket operation at the time left before the wall-clock deadline of the fetch using
    the connection now (a pooled connection serves several fetches, one at a time)."""

    def __init__(self, inner: httpcore.NetworkStream, host: str) -> None:
        self._inner = inner
        self._host = host

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(_deadline(), timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(_deadline(), timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        try:
            tls = self._inner.start_tls(
                ssl_context, server_hostname, _budget(_deadline(), timeout, httpcore.ConnectTimeout)
            )
        except httpcore.ConnectError as exc:
            raise httpcore.ConnectError(
                f"TLS handshake with {server_hostname or self._host} failed: {_tls_reason(exc)}"
            ) from exc
        return DeadlineStream(tls, self._host)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


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


def _budget(deadline: float, timeout: float | None, timeout_error: type[Exception]) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timeout_error("total time limit reached")
    return remaining if timeout is None else min(timeout, remaining)


def _os_reason(exc: BaseException | None) -> str:
    cause = (exc.__cause__ or exc.__context__) if exc is not None else None
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror  # "Connection refused" rather than "[Errno 111] Connection refused"
    return str(exc) if exc is not None else "no address to try"


def _tls_reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ssl.SSLCertVerificationError) and cause.verify_message:
        return f"certificate verify failed: {cause.verify_message}"
    if isinstance(cause, ssl.SSLError):
        text = cause.args[1] if len(cause.args) > 1 else str(cause)
        return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(text))
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause or exc) or "connection closed during handshake"
