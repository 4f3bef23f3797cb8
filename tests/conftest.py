"""The shared cast: a local feed server, the real broker (emptied per test), users and API clients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.test import APIClient

from articles.models import Feed
from articles.roles import OPERATORS, READERS, ensure_roles
from pipeline.taskqueue import redis_keys
from tests.support.local_http import serve

RSS_TEMPLATE = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{title}</title><link>https://example.invalid/</link>
<description>test feed</description>{items}</channel></rss>"""
ITEM_TEMPLATE = """<item><guid>{guid}</guid><title>{title}</title><link>https://example.invalid/{guid}</link>
<description>{summary}</description><pubDate>Mon, 02 Nov 2026 10:{minute:02d}:00 GMT</pubDate></item>"""


def rss(items: list[tuple[str, str, str]], title: str = "Test feed") -> bytes:
    """An RSS 2.0 document from (guid, title, summary) triples."""
    body = "".join(
        ITEM_TEMPLATE.format(guid=guid, title=t, summary=s, minute=i % 60) for i, (guid, t, s) in enumerate(items)
    )
    return RSS_TEMPLATE.format(title=title, items=body).encode()


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/rss+xml"
    etag: str | None = None
    delay: float = 0.0  # seconds before answering


@dataclass
class FeedServer:
    """A real HTTP server on 127.0.0.1 whose routes tests set; it counts requests per path."""

    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def serve(self, path: str, body: bytes, **kwargs: object) -> str:
        self.routes[path] = Route(body=body, **kwargs)  # type: ignore[arg-type]
        return self.url(path)


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server_state: FeedServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            server_state.hits[self.path] = server_state.hits.get(self.path, 0) + 1
            route = server_state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            time.sleep(route.delay)
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            if route.etag:
                self.send_header("ETag", route.etag)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base_url:
        server_state = FeedServer(base_url=base_url)
        yield server_state


def _empty(broker: dramatiq.Broker) -> None:
    """The queues and the flags that coalesce sends (enqueue.send_coalesced_*): a flag outliving its
    flushed message (it expires after a minute or more) made the next test's send find one "waiting"."""
    broker.flush_all()
    flags = list(broker.client.scan_iter(match=redis_keys.send_requested("*")))  # type: ignore[attr-defined]
    if flags:
        broker.client.delete(*flags)  # type: ignore[attr-defined]


@pytest.fixture
def broker() -> Iterator[dramatiq.Broker]:
    """The real Redis broker under the test namespace, emptied before and after the test."""
    broker = dramatiq.get_broker()
    _empty(broker)
    yield broker
    _empty(broker)


def with_role(user, role: str):  # type: ignore[no-untyped-def]
    """`user` made a member of the role's group (articles/roles.py). The groups are created here as well
    as by their migration: a transactional test's flush deletes them."""
    ensure_roles(Group, Permission)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def user(db):  # type: ignore[no-untyped-def]
    return with_role(get_user_model().objects.create_user("reader", password="reader-password-1"), READERS)


@pytest.fixture
def operator(db):  # type: ignore[no-untyped-def]
    return with_role(get_user_model().objects.create_user("ops", password="ops-password-1"), OPERATORS)


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def auth_api(user) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def operator_api(operator) -> APIClient:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(operator)
    return client


@pytest.fixture
def feed(db, feed_server: FeedServer) -> Feed:  # type: ignore[no-untyped-def]
    url = feed_server.serve(
        "/news.xml",
        rss(
            [
                ("a-1", "Budget vote passes", "Parliament approved the budget."),
                ("a-2", "Striker signs", "The club signed a new striker."),
            ]
        ),
    )
    return Feed.objects.create(url=url, title="Test feed")


@pytest.fixture
def fresh_vector_index(settings, tmp_path):  # type: ignore[no-untyped-def]
    """This test's own vector index: cache file under tmp_path, built from the test database on first
    use, and catching up on every search (no 1 s rate limit) so rows a test adds are found at once."""
    from pipeline.search import vector_index

    settings.VECTOR_INDEX_PATH = tmp_path / "vector-index.npz"
    settings.VECTOR_INDEX_REFRESH_MS = 0
    vector_index.reset_index()
    yield settings.VECTOR_INDEX_PATH
    vector_index.reset_index()


@pytest.fixture(autouse=True)
def _fresh_task_record_buffer() -> Iterator[None]:
    """Task-record rows a test queued and did not write must land neither in the next test nor, through
    the flush at exit, in the development database once the test database is gone."""
    from pipeline.taskqueue.buffer import BUFFER

    BUFFER.discard_pending()
    yield
    BUFFER.discard_pending()
