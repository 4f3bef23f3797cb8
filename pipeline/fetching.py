"""Fetch a feed over HTTP the way a careful feed reader does.

Plain functions, no Django: the actor passes settings values in as arguments.

Safety properties, and where each one lives:

* SSRF: every TCP connection the client opens (the first URL and each redirect
  hop) goes through ``_GuardedBackend.connect_tcp``, which resolves the host
  once, refuses when any resolved address is not public, and then connects to
  exactly the addresses it checked.  There is no second DNS lookup for a
  rebinding attacker to answer differently.  TLS still verifies the certificate
  against the hostname, because httpcore passes the hostname (not the IP) to
  ``start_tls``.
* Wall-clock deadline: httpx timeouts apply to each socket operation, so a
  server that drips one byte a second never trips them.  ``_DeadlineStream``
  shrinks every read/write/handshake timeout to what is left of
  ``total_timeout``, which also covers slow headers and slow TLS.
* Size cap: the body is read raw and decompressed here with a bounded output
  buffer, so a gzip bomb is cut off after ``max_bytes`` of output instead of
  being inflated a whole network chunk (up to ~64 MiB) at a time, as httpx's
  own decoders would.
"""

from __future__ import annotations

import contextlib
import email.utils
import http
import ipaddress
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpcore
import httpx

__all__ = ["FetchError", "FetchResult", "fetch_feed"]

DEFAULT_USER_AGENT = "newsrec/1.0 (+feed fetcher)"

_PERMANENT_REDIRECTS = frozenset({301, 308})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ALLOWED_SCHEMES = frozenset({"http", "https"})
_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)
# Only what _BoundedDecoder can inflate; httpx would otherwise advertise br/zstd
# when those packages happen to be installed.
_ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class FetchResult:
    status: int  # 200 (or another 2xx), or 304 when the conditional GET says not modified
    content: bytes  # empty on 304
    url: str  # final URL after redirects
    # URL the caller should store from now on: set only when there was at least one
    # redirect and every hop was permanent (301/308); None otherwise.
    permanent_url: str | None
    # On 304 these fall back to the validators that were sent when the server
    # omits them, so the caller can always store what it gets back.
    etag: str | None
    last_modified: str | None
    content_type: str | None


class FetchError(Exception):
    """A fetch that produced no usable body; ``reason`` is one readable line for operators."""

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        status: int | None = None,
    ) -> None:
        reason = " ".join(reason.split())
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after  # seconds, from Retry-After on 429/503
        self.permanent = permanent  # True for 410 Gone: the caller disables the feed
        self.status = status  # HTTP status when the server answered, else None


def fetch_feed(
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    allowed_private_hosts: Collection[str] = (),
    connect_timeout: float = 10,
    total_timeout: float = 30,
    max_bytes: int = 15 * 1024 * 1024,
    max_redirects: int = 5,
    user_agent: str = DEFAULT_USER_AGENT,
) -> FetchResult:
    """GET ``url`` (conditionally when validators are given), following redirects by hand.

    Raises FetchError for anything but a 2xx body or a 304; no httpx exception
    escapes.  ``allowed_private_hosts`` holds hostnames (matched exactly) and IP
    addresses or CIDR networks that may be non-public, e.g. ``("localhost",
    "127.0.0.1")`` for the demo or ``("10.0.0.0/8",)`` for an internal feed.
    """
    deadline = time.monotonic() + total_timeout
    current = _parse_start_url(url)

    etag, last_modified = _sendable(etag), _sendable(last_modified)
    headers = {"User-Agent": user_agent, "Accept": _ACCEPT, "Accept-Encoding": _ACCEPT_ENCODING}
    # Sent on every hop: the validators belong to the resource, wherever it now lives.
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    backend = _GuardedBackend(_AddressPolicy(allowed_private_hosts), deadline)
    client = httpx.Client(
        transport=_GuardedTransport(backend),
        # Reads may take the whole budget; _DeadlineStream trims each one to what is left.
        timeout=httpx.Timeout(total_timeout, connect=connect_timeout),
        follow_redirects=False,
        trust_env=False,  # no proxies or .netrc from the worker's environment
        headers=headers,
    )
    errors = _ErrorTranslation(connect_timeout=connect_timeout, total_timeout=total_timeout, deadline=deadline)

    all_permanent = True
    seen = {str(current)}
    looped = False
    redirects = 0
    with client:
        while True:
            target: httpx.URL | None = None
            with errors.around(current), client.stream("GET", current) as response:
                status = response.status_code
                if status in _REDIRECTS:
                    target = _redirect_target(current, response)
                elif status == 304:
                    return FetchResult(
                        status=304,
                        content=b"",
                        url=str(current),
                        permanent_url=str(current) if redirects and all_permanent else None,
                        etag=response.headers.get("etag") or etag,
                        last_modified=response.headers.get("last-modified") or last_modified,
                        content_type=response.headers.get("content-type"),
                    )
                elif 200 <= status < 300:
                    content = _read_body(response, max_bytes=max_bytes, deadline=deadline, total_timeout=total_timeout)
                    return FetchResult(
                        status=status,
                        content=content,
                        url=str(current),
                        permanent_url=str(current) if redirects and all_permanent else None,
                        etag=response.headers.get("etag"),
                        last_modified=response.headers.get("last-modified"),
                        content_type=response.headers.get("content-type"),
                    )
                else:
                    raise _http_error(response)

            # The redirect response is closed by now; only then open the next hop.
            assert target is not None  # every other status returned or raised above
            if status not in _PERMANENT_REDIRECTS:
                all_permanent = False
            looped = looped or str(target) in seen
            if redirects >= max_redirects:
                if looped:
                    raise FetchError(f"redirect loop (at {_shorten(str(target))})", status=status)
                raise FetchError(f"too many redirects (more than {max_redirects})", status=status)
            seen.add(str(target))
            redirects += 1
            current = target


def _sendable(validator: str | None) -> str | None:
    # Validators echo what an earlier response sent; one that cannot go back out as an
    # ASCII header is dropped, which only turns this into an unconditional GET.
    if validator and validator.isascii() and validator.isprintable():
        return validator
    return None


def _parse_start_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError(f"invalid URL {_shorten(url)!r}: {exc}") from None
    if parsed.scheme not in _ALLOWED_SCHEMES:
        raise FetchError(f"refused: only http and https URLs can be fetched, not {_shorten(url)!r}")
    if not parsed.host:
        raise FetchError(f"invalid URL {_shorten(url)!r}: no host")
    return parsed.copy_with(fragment=None)


def _redirect_target(current: httpx.URL, response: httpx.Response) -> httpx.URL:
    status = response.status_code
    location = response.headers.get("location", "").strip()
    if not location:
        raise FetchError(f"HTTP {status} redirect without a Location header", status=status)
    try:
        target = current.join(location)  # Location may be relative (RFC 9110 allows it)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise FetchError(f"redirect to an invalid URL: {_shorten(location)!r}", status=status) from None
    if target.scheme not in _ALLOWED_SCHEMES:
        raise FetchError(f"refused redirect to a non-HTTP URL: {_shorten(location)!r}", status=status)
    if not target.host:
        raise FetchError(f"redirect to an invalid URL: {_shorten(location)!r}", status=status)
    return target.copy_with(fragment=None)


def _http_error(response: httpx.Response) -> FetchError:
    status = response.status_code
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = _shorten(response.reason_phrase, 60)
    reason = f"HTTP {status} {phrase}".rstrip()
    retry_after = None
    if status in (429, 503):
        retry_after = _parse_retry_after(response.headers.get("retry-after"))
        if retry_after is not None:
            reason += f" (retry after {retry_after:.0f} s)"
    return FetchError(reason, retry_after=retry_after, permanent=status == 410, status=status)


def _parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- body -------------------------------------------------------------------


def _read_body(response: httpx.Response, *, max_bytes: int, deadline: float, total_timeout: float) -> bytes:
    coding = _content_coding(response.headers.get("content-encoding"))
    too_large = f"response larger than {_format_size(max_bytes)}"
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(too_large, status=response.status_code)

    decoder = _BoundedDecoder(coding, max_bytes)
    body = bytearray()
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > max_bytes:
            raise FetchError(too_large, status=response.status_code)
        body += decoder.feed(chunk)
        if time.monotonic() > deadline:
            raise FetchError(f"timed out after {total_timeout:g} s")
    body += decoder.finish()
    return bytes(body)


def _content_coding(header: str | None) -> str | None:
    codings = [c.strip().lower() for c in (header or "").split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return "deflate" if codings[0] == "deflate" else "gzip"
    raise FetchError(f"unsupported Content-Encoding: {_shorten(header or '', 60)}")


class _BoundedDecoder:
    """Inflates a gzip/deflate body, refusing before it produces more than ``limit`` bytes.

    zlib's ``max_length`` caps each call's output, so memory stays near the
    limit no matter how far the input would expand.
    """

    def __init__(self, coding: str | None, limit: int) -> None:
        self._coding = coding
        self._limit = limit
        self._produced = 0
        self._started = False
        self._finished = False  # trailing bytes after the last gzip member are ignored
        self._pending = b""  # a gzip magic number split across two network chunks
        self._inflater = self._new_inflater()

    def _new_inflater(self) -> Any:
        if self._coding == "gzip":
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        return zlib.decompressobj(zlib.MAX_WBITS)

    def feed(self, data: bytes) -> bytes:
        if self._coding is None:
            self._count(len(data))
            return data
        out: list[bytes] = []
        while data and not self._finished:
            if self._inflater.eof:
                data = self._pending + data
                self._pending = b""
                if len(data) < 2:
                    self._pending = data
                    break
                # gzip allows several members back to back; anything else is junk some servers append.
                if self._coding == "gzip" and data.startswith(b"\x1f\x8b"):
                    self._inflater = self._new_inflater()
                else:
                    self._finished = True
                    break
            try:
                chunk = self._inflater.decompress(data, self._limit - self._produced + 1)
            except zlib.error as exc:
                if self._coding == "deflate" and not self._started:
                    # "deflate" is ambiguous in practice: some servers send raw deflate without the zlib header.
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise FetchError(f"corrupt {self._coding} response body: {exc}") from None
            self._started = True
            self._count(len(chunk))
            out.append(chunk)
            # Under the limit zlib consumed all input; after a member's end the rest is in unused_data.
            data = self._inflater.unused_data if self._inflater.eof else b""
        return b"".join(out)

    def finish(self) -> bytes:
        if self._coding is None or self._finished or self._inflater.eof:
            return b""
        # A body cut short still yields what was decodable; the parser judges the rest.
        tail: bytes = self._inflater.flush()
        self._count(len(tail))
        return tail

    def _count(self, n: int) -> None:
        self._produced += n
        if self._produced > self._limit:
            raise FetchError(f"response larger than {_format_size(self._limit)}")


# --- errors -----------------------------------------------------------------


class _GuardError(Exception):
    """A readable refusal raised inside the transport; httpx passes unknown exceptions through unchanged."""


class _ErrorTranslation:
    """Turns whatever httpx/httpcore raise during one hop into a FetchError naming that hop's host."""

    def __init__(self, *, connect_timeout: float, total_timeout: float, deadline: float) -> None:
        self._connect_timeout = connect_timeout
        self._total_timeout = total_timeout
        self._deadline = deadline

    @contextlib.contextmanager
    def around(self, url: httpx.URL) -> Iterator[None]:
        host = url.host
        try:
            yield
        except FetchError:
            raise
        except _GuardError as exc:
            raise FetchError(str(exc)) from None
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout) and time.monotonic() < self._deadline:
                raise FetchError(f"connection to {host} timed out after {self._connect_timeout:g} s") from None
            raise FetchError(f"timed out after {self._total_timeout:g} s") from None
        except httpx.ConnectError as exc:
            # _GuardedBackend and _DeadlineStream word these messages for operators.
            raise FetchError(str(exc) or f"cannot connect to {host}") from None
        except httpx.RemoteProtocolError as exc:
            raise FetchError(f"protocol error from {host}: {exc}") from None
        except httpx.NetworkError as exc:
            raise FetchError(f"network error talking to {host}: {exc}") from None
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__} from {host}: {exc}") from None
        except (httpx.InvalidURL, httpx.StreamError) as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise FetchError(f"network error talking to {host}: {exc}") from None


# --- SSRF guard ---------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _address_problem(ip: IPAddress) -> str | None:
    """Why a feed fetch must not connect to ``ip`` ("loopback", "private", ...), or None if it is public."""
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded is not None:
        # ::ffff:127.0.0.1, 6to4, Teredo and NAT64 forms reach the IPv4 address inside them.
        problem = _address_problem(embedded)
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


class _AddressPolicy:
    """Which resolved addresses a fetch may connect to."""

    def __init__(self, allowed_private_hosts: Collection[str]) -> None:
        if isinstance(allowed_private_hosts, str):  # a bare "localhost" would otherwise be split into letters
            allowed_private_hosts = (allowed_private_hosts,)
        self._hosts: set[str] = set()
        self._networks: list[IPNetwork] = []
        for entry in allowed_private_hosts:
            try:
                self._networks.append(ipaddress.ip_network(_normalise_host(entry), strict=False))
            except ValueError:
                self._hosts.add(_normalise_host(entry))

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise _GuardError when any address is non-public and not allow-listed."""
        if _normalise_host(host) in self._hosts:
            return
        for ip in addresses:
            problem = _address_problem(ip)
            if problem is None or self._allows(ip):
                continue
            if _normalise_host(host) == _normalise_host(str(ip)):
                raise _GuardError(f"refused: {ip} is a {problem} address")
            raise _GuardError(f"refused: {host} resolves to {ip}, a {problem} address")

    def _allows(self, ip: IPAddress) -> bool:
        if any(ip.version == net.version and ip in net for net in self._networks):
            return True
        embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
        return embedded is not None and self._allows(embedded)


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
        raise _GuardError(f"DNS lookup for {host} timed out after {timeout:.0f} s")
    if "error" in outcome:
        exc = outcome["error"]
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _GuardError(f"DNS lookup failed for {host}: {detail}")

    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in outcome.get("infos", []):
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise _GuardError(f"DNS lookup for {host} returned no addresses")
    return addresses


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, vets every address, then connects only to the vetted addresses.

    Connecting to the checked IP (rather than handing the hostname to the
    socket layer, which would resolve it again) closes the DNS-rebinding gap.
    """

    def __init__(self, policy: _AddressPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = _resolve(host, port, _budget(self._deadline, timeout, httpcore.ConnectTimeout))
        self._policy.check(host, addresses)
        failure: Exception | None = None
        for ip in addresses:
            try:
                stream = self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=_budget(self._deadline, timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectTimeout as exc:
                failure = exc
                continue
            except httpcore.ConnectError as exc:
                failure = exc  # e.g. ::1 refused while 127.0.0.1 listens: try the next address
                continue
            return _DeadlineStream(stream, self._deadline, host)
        if isinstance(failure, httpcore.ConnectTimeout):
            raise failure
        raise httpcore.ConnectError(f"cannot connect to {host}:{port}: {_os_reason(failure)}")

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise _GuardError("refused: unix sockets are not fetched")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """Caps every socket operation at the time left before the fetch's wall-clock deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: float, host: str) -> None:
        self._inner = inner
        self._deadline = deadline
        self._host = host

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        try:
            tls = self._inner.start_tls(
                ssl_context, server_hostname, _budget(self._deadline, timeout, httpcore.ConnectTimeout)
            )
        except httpcore.ConnectError as exc:
            raise httpcore.ConnectError(
                f"TLS handshake with {server_hostname or self._host} failed: {_tls_reason(exc)}"
            ) from exc
        return _DeadlineStream(tls, self._deadline, self._host)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        ssl_context = httpx.create_ssl_context()
        super().__init__(verify=ssl_context, trust_env=False)
        # httpx.HTTPTransport offers no parameter for a network backend, so swap in a
        # pool built with ours; handle_request only uses self._pool (stable in httpx 0.2x).
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=backend)


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


# --- formatting ---------------------------------------------------------------


def _format_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
