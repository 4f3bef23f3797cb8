"""Fetches share keep-alive connections (pipeline.feeds.connection_pool.pooled_transport), against a real
HTTP/1.1 server this module starts on 127.0.0.1: one connection for many polls of a host, each fetch
with its own deadline, a stale pooled connection replaced, and no connection crossing allow-lists."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from pipeline.feeds import connection_pool
from pipeline.feeds.connection_pool import KEEPALIVE_SECONDS, MAX_IDLE_CONNECTIONS, MAX_IDLE_PER_HOST, pooled_transport
from pipeline.feeds.fetching import FetchError, fetch_feed
from tests.support.faults import wait_until
from tests.support.local_http import serve

LOCAL = ("127.0.0.1",)
BODY = b"<rss version='2.0'><channel><title>t</title></channel></rss>"
ETAG = '"v1"'


@dataclass
class Seen:
    connections: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Server:
    url: str
    seen: Seen
    # What the handler does: "answer"; "drop-reused" (answer a connection's first request, close on the
    # next without answering, as a server whose idle timeout fires); "drop-all"; "slow-second" (the
    # second request on a connection waits 3 s); "slow" (every request waits 3 s).
    mode: list[str]


def _send_feed(handler: BaseHTTPRequestHandler, etag: str | None = None) -> None:
    """Answer 200 with the test feed (and `etag`)."""
    handler.send_response(200)
    if etag:
        handler.send_header("ETag", etag)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", str(len(BODY)))
    handler.end_headers()
    handler.wfile.write(BODY)


@pytest.fixture
def server() -> Iterator[Server]:
    seen = Seen()
    mode = ["answer"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real feed servers speak

        def setup(self) -> None:
            super().setup()
            self.served = 0
            with seen.lock:
                seen.connections += 1

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            with seen.lock:
                seen.requests += 1
            self.served += 1
            if mode[0] == "drop-all" or (mode[0] == "drop-reused" and self.served > 1):
                self.close_connection = True
                return
            if mode[0] == "slow" or (mode[0] == "slow-second" and self.served > 1):
                time.sleep(3)
            if self.path == "/moved":
                page = b"<p>Moved to <a href='/feed.xml'>the feed</a></p>"
                self.send_response(301)
                self.send_header("Location", "/feed.xml")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            if self.headers.get("If-None-Match") == ETAG:
                self.send_response(304)
                self.send_header("ETag", ETAG)
                self.end_headers()
                return
            _send_feed(self, ETAG)

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as base_url:
        yield Server(f"{base_url}/feed.xml", seen, mode)


def test_polls_of_one_host_share_one_connection(server: Server) -> None:
    first = fetch_feed(server.url, allowed_private_hosts=LOCAL)
    again = [fetch_feed(server.url, etag=first.etag, allowed_private_hosts=LOCAL) for _ in range(3)]

    assert first.status == 200 and first.content == BODY
    assert [r.status for r in again] == [304, 304, 304]
    assert (server.seen.connections, server.seen.requests) == (1, 4)


def test_a_redirect_and_its_target_on_one_host_share_a_connection(server: Server) -> None:
    result = fetch_feed(server.url.replace("/feed.xml", "/moved"), allowed_private_hosts=LOCAL)

    assert (result.status, result.permanent_url) == (200, server.url)
    assert (server.seen.connections, server.seen.requests) == (1, 2)


def test_each_fetch_keeps_its_own_deadline_on_a_pooled_connection(server: Server) -> None:
    fetch_feed(server.url, allowed_private_hosts=LOCAL, total_timeout=0.5)
    time.sleep(0.7)  # past the first fetch's deadline, within the connection's idle time
    assert fetch_feed(server.url, allowed_private_hosts=LOCAL, total_timeout=5).status == 200
    assert server.seen.connections == 1  # the same connection, read under the second fetch's deadline

    server.mode[0] = "slow-second"
    fetch_feed(server.url, allowed_private_hosts=LOCAL)  # a new connection's first request: answered at once
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out after 1 s"):
        fetch_feed(server.url, allowed_private_hosts=LOCAL, total_timeout=1)
    assert time.monotonic() - started < 2.5


def test_a_pooled_connection_the_server_closed_is_replaced(server: Server) -> None:
    server.mode[0] = "drop-reused"
    assert fetch_feed(server.url, allowed_private_hosts=LOCAL).status == 200
    # The pooled connection's request gets no answer: sent again, once, on a new connection.
    assert fetch_feed(server.url, allowed_private_hosts=LOCAL).status == 200
    assert (server.seen.connections, server.seen.requests) == (2, 3)


def test_concurrent_polls_of_a_host_each_get_a_connection_and_a_few_are_kept(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polls in flight at once never wait for each other's connection; once they are done the host
    keeps MAX_IDLE_PER_HOST of them for the next polls, and closes the rest."""
    server.mode[0] = "slow"
    # The kept connections must outlive the wait for the burst's last poll: the test server accepts
    # one connection per loop with a listen backlog of 5, so of 12 connecting at once a few can be
    # accepted only after the kernel resends their SYN (1 s, then 3 s), and finish that much later
    # than the first. With the 1.5 s keep-alive, a kept one then expired before the second burst
    # (CI once saw 14 connections for 13).
    monkeypatch.setattr(connection_pool, "KEEPALIVE_SECONDS", 60.0)

    def poll_at_once(polls: int) -> None:
        with ThreadPoolExecutor(polls) as threads:
            statuses = list(
                threads.map(lambda _: fetch_feed(server.url, allowed_private_hosts=LOCAL).status, range(polls))
            )
        assert statuses == [200] * polls

    burst = MAX_IDLE_PER_HOST + 4
    poll_at_once(burst)
    assert server.seen.connections == burst
    # One more than were kept: the kept ones are reused, one is opened.
    poll_at_once(MAX_IDLE_PER_HOST + 1)
    assert (server.seen.connections, server.seen.requests) == (burst + 1, burst + MAX_IDLE_PER_HOST + 1)


def test_a_new_connection_closed_without_an_answer_is_the_servers_answer(server: Server) -> None:
    server.mode[0] = "drop-all"
    with pytest.raises(FetchError, match="protocol error from 127.0.0.1: Server disconnected"):
        fetch_feed(server.url, allowed_private_hosts=LOCAL)
    assert (server.seen.connections, server.seen.requests) == (1, 1)  # not retried


def test_a_connection_opened_under_an_allow_list_is_not_used_without_it(server: Server) -> None:
    assert fetch_feed(server.url, allowed_private_hosts=LOCAL).status == 200
    with pytest.raises(FetchError, match="refused: 127.0.0.1 is a loopback address"):
        fetch_feed(server.url, allowed_private_hosts=())
    assert (server.seen.connections, server.seen.requests) == (1, 1)


def test_idle_connections_are_let_go(server: Server) -> None:
    fetch_feed(server.url, allowed_private_hosts=LOCAL)
    time.sleep(KEEPALIVE_SECONDS + 0.5)
    fetch_feed(server.url, allowed_private_hosts=LOCAL)
    assert server.seen.connections == 2


@dataclass
class Open:
    """Connections a server has accepted and not yet seen closed."""

    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self.lock:
            self.count += n


def _counting_handler(open_connections: Open) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            open_connections.add(1)

        def finish(self) -> None:
            open_connections.add(-1)
            super().finish()

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            _send_feed(self)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def test_idle_connections_over_many_hosts_stay_within_the_cap() -> None:
    """Each host has a pool of its own; together they keep at most MAX_IDLE_CONNECTIONS idle sockets,
    the least recently used host's going first, and the hosts polled last keep theirs for reuse."""
    open_connections = Open()
    hosts = MAX_IDLE_CONNECTIONS + 8
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serve(_counting_handler(open_connections))) + "/feed.xml" for _ in range(hosts)]
        for url in urls:
            assert fetch_feed(url, allowed_private_hosts=LOCAL).status == 200
        transport = pooled_transport(LOCAL)
        assert transport.idle_connections() <= MAX_IDLE_CONNECTIONS
        # The servers see the connections of the first hosts closed, and only those.
        wait_until(lambda: open_connections.count <= MAX_IDLE_CONNECTIONS, timeout=10, what="idle connections closed")
        accepted = open_connections.count
        assert fetch_feed(urls[-1], allowed_private_hosts=LOCAL).status == 200  # the last host's connection, again
        assert open_connections.count == accepted


def test_hosts_idle_for_the_keepalive_time_are_let_go_at_the_next_fetch() -> None:
    open_connections = Open()
    with serve(_counting_handler(open_connections)) as first, serve(_counting_handler(open_connections)) as second:
        fetch_feed(f"{first}/feed.xml", allowed_private_hosts=LOCAL)
        fetch_feed(f"{second}/feed.xml", allowed_private_hosts=LOCAL)
        assert open_connections.count == 2
        time.sleep(KEEPALIVE_SECONDS + 0.5)
        fetch_feed(f"{second}/feed.xml", allowed_private_hosts=LOCAL)  # a new connection: the old one expired
        wait_until(lambda: open_connections.count == 1, timeout=10, what="expired connections closed")


def test_a_cookie_set_by_a_redirect_goes_to_the_next_hop_of_that_fetch_only() -> None:
    """A cookie wall (a redirect that sets a cookie, then the feed for those who have it): the cookie
    is sent on the fetch's next hop, and never on another fetch, as no pool or client keeps it."""
    cookies_seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/wall":
                self.send_response(302)
                self.send_header("Set-Cookie", "consent=yes; Path=/")
                self.send_header("Location", "/feed.xml")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            cookies_seen.append(self.headers.get("Cookie"))
            _send_feed(self)

        def log_message(self, *args: Any) -> None:
            pass

    with serve(Handler) as base_url:
        through_the_wall = fetch_feed(f"{base_url}/wall", allowed_private_hosts=LOCAL)
        direct = fetch_feed(f"{base_url}/feed.xml", allowed_private_hosts=LOCAL)

    assert (through_the_wall.status, through_the_wall.content, direct.status) == (200, BODY, 200)
    assert cookies_seen == ["consent=yes", None]
