"""pipeline.feeds.fetching against a real HTTP server this module starts on 127.0.0.1 (no other network)."""

from __future__ import annotations

import gzip
import ipaddress
import socket
import ssl
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from pipeline.feeds import address_guard, bounded_body, connection_pool
from pipeline.feeds.fetching import FetchError, FetchResult, _parse_start_url, fetch_feed
from pipeline.feeds.headers import retry_after_seconds
from tests.support.local_http import serve

FEED = (Path(__file__).parent / "feeds" / "rss2.xml").read_bytes()
LOCAL = ("127.0.0.1",)  # the allow-list every test uses unless it is testing the guard
ETAG = '"v1"'
LAST_MODIFIED = "Tue, 14 May 2024 08:30:00 GMT"
MiB = 1024 * 1024


def _gzip_bomb(expanded: int) -> bytes:
    """A small gzip body that inflates to ``expanded`` bytes of zeros."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MiB)
    return b"".join(packer.compress(block) for _ in range(expanded // MiB)) + packer.flush()


BOMB = _gzip_bomb(64 * MiB)  # ~64 KB on the wire


class FeedServer(BaseHTTPRequestHandler):
    """Routes for every case; HTTP/1.0, so each response ends by closing the connection."""

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        route = ROUTES.get(self.path.split("?")[0])
        if route is None and self.path.startswith("/hop/"):
            route = hop
        if route is None:
            self.reply(404, b"no such route")
            return
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as several tests intend

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])  # type: ignore[index]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, length: bool = True) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def redirect(self, status: int, location: str) -> None:
        self.reply(status, headers={"Location": location})


def feed(h: FeedServer) -> None:
    h.reply(200, FEED, {"Content-Type": "application/rss+xml; charset=utf-8"})


def echo_headers(h: FeedServer) -> None:
    body = "\n".join(f"{k.lower()}: {v}" for k, v in h.headers.items()).encode()
    h.reply(200, body, {"Content-Type": "text/plain"})


def conditional(h: FeedServer) -> None:
    validators = {"ETag": ETAG, "Last-Modified": LAST_MODIFIED}
    if h.headers.get("If-None-Match") == ETAG or h.headers.get("If-Modified-Since") == LAST_MODIFIED:
        h.reply(304, headers={"ETag": ETAG})
        return
    h.reply(200, FEED, {"Content-Type": "application/rss+xml", **validators})


def hop(h: FeedServer) -> None:
    # /hop/0 -> /hop/1 -> ... -> /hop/5 -> /feed.xml: five redirects in all.
    n = int(h.path.rsplit("/", 1)[1])
    h.redirect(302, f"/hop/{n + 1}" if n < 4 else "/feed.xml")


def drip_body(h: FeedServer) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "application/rss+xml")
    h.end_headers()
    for byte in FEED[:20]:  # bounded: stops by itself after 20 s even if nobody hangs up
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(1)


def drip_headers(h: FeedServer) -> None:
    for byte in b"HTTP/1.0 200 OK\r\nContent-Type: application/rss+xml\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n":
        h.wfile.write(bytes([byte]))
        h.wfile.flush()
        time.sleep(0.25)


def gzipped(h: FeedServer) -> None:
    h.reply(200, gzip.compress(FEED), {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"})


def raw_deflate(h: FeedServer) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(FEED) + packer.flush()
    h.reply(200, body, {"Content-Type": "application/rss+xml", "Content-Encoding": "deflate"})


ROUTES: dict[str, Callable[[FeedServer], None]] = {
    "/feed.xml": feed,
    "/echo": echo_headers,
    "/conditional": conditional,
    "/moved": lambda h: h.redirect(301, "/moved-again"),  # absolute-path Location
    "/moved-again": lambda h: h.redirect(308, "feed.xml"),  # path-relative Location
    "/mixed": lambda h: h.redirect(301, "/mixed-temporary"),
    "/mixed-temporary": lambda h: h.redirect(302, f"{h.origin}/feed.xml"),  # absolute Location
    "/loop-a": lambda h: h.redirect(302, "/loop-b"),
    "/loop-b": lambda h: h.redirect(302, "/loop-a"),
    "/to-private": lambda h: h.redirect(302, f"http://127.0.0.2:{h.port}/feed.xml"),
    "/to-file": lambda h: h.redirect(302, "file:///etc/passwd"),
    "/no-location": lambda h: h.reply(302),
    "/missing": lambda h: h.reply(404, b"not here"),
    "/gone": lambda h: h.reply(410, b"gone"),
    "/slow-down": lambda h: h.reply(429, headers={"Retry-After": "120"}),
    "/maintenance": lambda h: h.reply(
        503, headers={"Retry-After": format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)}
    ),
    "/drip": drip_body,
    "/drip-headers": drip_headers,
    "/big": lambda h: h.reply(200, bytes(2 * MiB), {"Content-Type": "application/rss+xml"}),
    "/big-unannounced": lambda h: h.reply(200, bytes(2 * MiB), {"Content-Type": "application/rss+xml"}, length=False),
    "/gzip": gzipped,
    "/deflate": raw_deflate,
    "/bomb": lambda h: h.reply(200, BOMB, {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}),
    "/brotli": lambda h: h.reply(200, b"\x0b", {"Content-Encoding": "br"}),
}


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve(FeedServer, poll_interval=0.05) as base_url:
        yield base_url


def fetch(url: str, **kwargs: Any) -> FetchResult:
    kwargs.setdefault("allowed_private_hosts", LOCAL)
    kwargs.setdefault("total_timeout", 10)
    return fetch_feed(url, **kwargs)


def fetch_error(url: str, **kwargs: Any) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, **kwargs)
    assert "\n" not in caught.value.reason
    return caught.value


# --- success paths -------------------------------------------------------------------


def test_fetches_a_feed(origin: str) -> None:
    result = fetch(f"{origin}/feed.xml")

    assert result.status == 200
    assert result.content == FEED
    assert result.url == f"{origin}/feed.xml"
    assert result.permanent_url is None
    assert result.content_type == "application/rss+xml; charset=utf-8"


def test_sends_identity_and_only_decodable_encodings(origin: str) -> None:
    headers = fetch(f"{origin}/echo", user_agent="newsrec-test/9").content.decode()

    assert "user-agent: newsrec-test/9" in headers
    assert "accept-encoding: gzip, deflate" in headers
    assert "if-none-match" not in headers


def test_conditional_get_returns_304(origin: str) -> None:
    first = fetch(f"{origin}/conditional")
    assert (first.status, first.etag, first.last_modified) == (200, ETAG, LAST_MODIFIED)

    by_etag = fetch(f"{origin}/conditional", etag=first.etag)
    assert (by_etag.status, by_etag.content, by_etag.etag) == (304, b"", ETAG)

    by_date = fetch(f"{origin}/conditional", last_modified=first.last_modified)
    assert (by_date.status, by_date.content) == (304, b"")
    assert by_date.last_modified == LAST_MODIFIED  # kept from the request when the 304 omits it


def test_unsendable_validator_is_dropped_not_fatal(origin: str) -> None:
    # An ETag stored from some earlier response that cannot go out as a header again.
    result = fetch(f"{origin}/conditional", etag='"caf\u00e9"', last_modified="Tue\n14 May")

    assert result.status == 200


def test_permanent_redirect_chain_sets_permanent_url(origin: str) -> None:
    result = fetch(f"{origin}/moved")

    assert result.content == FEED
    assert result.url == f"{origin}/feed.xml"
    assert result.permanent_url == f"{origin}/feed.xml"


def test_temporary_hop_in_chain_leaves_permanent_url_unset(origin: str) -> None:
    result = fetch(f"{origin}/mixed")

    assert result.url == f"{origin}/feed.xml"
    assert result.permanent_url is None


def test_redirects_up_to_the_limit_are_followed(origin: str) -> None:
    assert fetch(f"{origin}/hop/0", max_redirects=5).content == FEED


def test_gzip_and_raw_deflate_bodies_are_decoded(origin: str) -> None:
    assert fetch(f"{origin}/gzip").content == FEED
    assert fetch(f"{origin}/deflate").content == FEED


def test_allow_list_by_hostname_and_by_network(origin: str) -> None:
    port = origin.rsplit(":", 1)[1]
    assert fetch(f"http://localhost:{port}/feed.xml", allowed_private_hosts=("localhost",)).status == 200
    assert fetch(f"{origin}/feed.xml", allowed_private_hosts=("127.0.0.0/8",)).status == 200


def test_connects_to_the_address_it_vetted(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding: the name is resolved once, by the guard; the socket layer must not
    # resolve it again (a second answer could point somewhere else).
    port = int(origin.rsplit(":", 1)[1])
    lookups: list[str] = []

    def vetted_lookup(host: str, port: int, **kwargs: Any) -> list[Any]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    real_getaddrinfo = socket.getaddrinfo

    def second_lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "feeds.test":
            raise AssertionError("hostname resolved a second time")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(address_guard, "_getaddrinfo", vetted_lookup)
    monkeypatch.setattr(socket, "getaddrinfo", second_lookup)

    result = fetch(f"http://feeds.test:{port}/feed.xml", allowed_private_hosts=("127.0.0.1",))

    assert result.content == FEED
    assert lookups == ["feeds.test"]


# --- refusals and failures ---------------------------------------------------------------


def test_loopback_refused_when_not_allow_listed(origin: str) -> None:
    error = fetch_error(f"{origin}/feed.xml", allowed_private_hosts=())

    assert error.reason == "refused: 127.0.0.1 is a loopback address"
    assert error.permanent is False


def test_redirect_to_private_address_is_refused(origin: str) -> None:
    error = fetch_error(f"{origin}/to-private")

    assert error.reason == "refused: 127.0.0.2 is a loopback address"


def test_hostname_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A public name with one private answer (a rebinding setup) is refused before any connection.
    def lookup(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(address_guard, "_getaddrinfo", lookup)

    error = fetch_error("https://feeds.test/rss", allowed_private_hosts=())

    assert error.reason == "refused: feeds.test resolves to 10.0.0.5, a private address"


def test_dns_failure_is_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    def lookup(host: str, port: int, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(address_guard, "_getaddrinfo", lookup)

    error = fetch_error("http://nowhere.test/feed")

    assert error.reason == "DNS lookup failed for nowhere.test: Name or service not known"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.5", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata endpoint
        ("0.0.0.0", "unspecified"),
        ("224.0.1.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.0.0.5", "private"),
        ("2002:a00:5::", "private"),  # 6to4 wrapping 10.0.0.5
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classification(address: str, problem: str | None) -> None:
    assert address_guard.address_problem(ipaddress.ip_address(address)) == problem


def test_non_http_redirect_is_refused(origin: str) -> None:
    error = fetch_error(f"{origin}/to-file")

    assert error.reason == "refused redirect to a non-HTTP URL: 'file:///etc/passwd'"


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/feed", "gopher://127.0.0.1/"])
def test_non_http_url_is_refused(url: str) -> None:
    assert fetch_error(url).reason.startswith("refused: only http and https")


@pytest.mark.parametrize("url", ["http://exa mple.com/", "http:///feed", "not a url"])
def test_invalid_url_is_a_fetch_error(url: str) -> None:
    fetch_error(url)


def test_redirect_without_location(origin: str) -> None:
    assert fetch_error(f"{origin}/no-location").reason == "HTTP 302 redirect without a Location header"


def test_redirect_loop(origin: str) -> None:
    assert fetch_error(f"{origin}/loop-a").reason.startswith("redirect loop")


def test_too_many_redirects(origin: str) -> None:
    assert fetch_error(f"{origin}/hop/0", max_redirects=4).reason == "too many redirects (more than 4)"


def test_not_found(origin: str) -> None:
    error = fetch_error(f"{origin}/missing")

    assert error.reason == "HTTP 404 Not Found"
    assert (error.status, error.permanent, error.retry_after) == (404, False, None)


def test_gone_is_permanent(origin: str) -> None:
    error = fetch_error(f"{origin}/gone")

    assert error.reason == "HTTP 410 Gone"
    assert error.permanent is True


def test_too_many_requests_carries_retry_after_seconds(origin: str) -> None:
    error = fetch_error(f"{origin}/slow-down")

    assert error.retry_after == 120
    assert error.reason == "HTTP 429 Too Many Requests (retry after 120 s)"


def test_unavailable_carries_retry_after_from_http_date(origin: str) -> None:
    error = fetch_error(f"{origin}/maintenance")

    assert error.retry_after is not None and 3000 < error.retry_after <= 3600
    assert error.reason.startswith("HTTP 503 Service Unavailable")


def test_retry_after_parsing() -> None:
    now = datetime(2024, 5, 14, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("30", now=now) == 30
    assert retry_after_seconds("Tue, 14 May 2024 12:01:00 GMT", now=now) == 60
    assert retry_after_seconds("Tue, 14 May 2024 11:00:00 GMT", now=now) == 0  # already past
    assert retry_after_seconds("soon", now=now) is None
    assert retry_after_seconds("-5", now=now) is None
    assert retry_after_seconds(None, now=now) is None


def test_dripping_body_is_cut_off_by_total_timeout(origin: str) -> None:
    assert fetch_error(f"{origin}/drip", total_timeout=1.5).reason == "timed out after 1.5 s"


def test_dripping_headers_are_cut_off_by_total_timeout(origin: str) -> None:
    assert fetch_error(f"{origin}/drip-headers", total_timeout=1).reason == "timed out after 1 s"


def test_oversize_body_is_refused(origin: str) -> None:
    assert fetch_error(f"{origin}/big", max_bytes=MiB).reason == "response larger than 1 MiB"
    # Without Content-Length the cap applies while streaming.
    assert fetch_error(f"{origin}/big-unannounced", max_bytes=MiB).reason == "response larger than 1 MiB"


def test_gzip_bomb_is_cut_off_without_inflating_it(origin: str) -> None:
    tracemalloc.start()
    try:
        error = fetch_error(f"{origin}/bomb", max_bytes=MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error.reason == "response larger than 1 MiB"
    assert peak < 16 * MiB  # the bomb expands to 64 MiB


def test_unsupported_content_encoding(origin: str) -> None:
    assert fetch_error(f"{origin}/brotli").reason == "unsupported Content-Encoding: br"


def test_connection_refused() -> None:
    with socket.socket() as probe:  # find a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    error = fetch_error(f"http://127.0.0.1:{port}/feed.xml")

    assert error.reason == f"cannot connect to 127.0.0.1:{port}: Connection refused"


def test_tls_failure_is_readable(origin: str) -> None:
    # The test server speaks plain HTTP, so a TLS handshake with it fails.
    error = fetch_error(origin.replace("http://", "https://") + "/feed.xml")

    assert error.reason.startswith("TLS handshake with 127.0.0.1 failed:")


def test_multi_member_gzip_is_decoded() -> None:
    decoder = bounded_body.BoundedDecoder("gzip", limit=MiB)
    body = gzip.compress(b"first ") + gzip.compress(b"second")

    decoded = b"".join(decoder.feed(body[i : i + 7]) for i in range(0, len(body), 7)) + decoder.finish()

    assert decoded == b"first second"


def test_fetches_share_one_tls_context(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Building a TLS context loads the whole CA bundle (~40 ms of CPU): once per worker process, not
    # once per fetch (it was most of a scraping worker's busy time, benchmarks/bench_scraping.py).
    import httpx

    built = []
    create = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(1)
        return create(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    connection_pool.shared_tls_context.cache_clear()
    connection_pool._transport_for.cache_clear()  # pooled transports hold the context they were built with

    fetch(f"{origin}/feed.xml")
    fetch(f"{origin}/feed.xml")
    tls_error = fetch_error(origin.replace("http://", "https://") + "/feed.xml")

    assert len(built) == 1
    assert tls_error.reason.startswith("TLS handshake with 127.0.0.1 failed:")
    context = connection_pool.shared_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname  # still verifies certificates


def test_a_feed_url_is_parsed_once_per_process_and_a_refused_one_every_time() -> None:
    """Start URLs are cached parsed (polled again and again); a refusal is never cached as a URL."""
    _parse_start_url.cache_clear()
    first = _parse_start_url("http://198.18.0.1/feed.xml#top")
    assert _parse_start_url("http://198.18.0.1/feed.xml#top") is first
    assert str(first) == "http://198.18.0.1/feed.xml"
    for _ in range(2):
        with pytest.raises(FetchError, match="only http and https"):
            _parse_start_url("ftp://198.18.0.1/feed.xml")
    assert _parse_start_url.cache_info().currsize == 1
