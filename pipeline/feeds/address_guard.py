"""The SSRF guard of every fetch: resolve once, refuse non-public addresses, connect only to those checked.

Every TCP connection the client opens (the first URL and each redirect hop) goes through
`GuardedBackend.connect_tcp`, which resolves the host once, refuses when any resolved address is not
public, and then connects to exactly the addresses it checked. There is no second DNS lookup for a
rebinding attacker to answer differently. TLS still verifies the certificate against the hostname,
because httpcore passes the hostname (not the IP) to `start_tls`.

Wall-clock deadline: httpx timeouts apply to each socket operation, so a server that drips one byte
a second never trips them. `DeadlineStream` shrinks every read/write/handshake timeout to what is
left of the fetch's total budget, which also covers slow headers and slow TLS.

Connections opened here are pooled by pipeline/feeds/connection_pool.py, so a connection serves several
fetches: the deadline is the fetch's, not the connection's, and every socket operation reads it from
`fetch_context`, which the fetch on this thread entered.

Tests fake DNS through the `_getaddrinfo` hook, never the system resolver.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpcore


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
