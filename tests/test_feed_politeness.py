"""Gaps in the fetching checks, end to end through a scrape: redirects change the stored URL only when
permanent, and a disabled feed says why in the admin."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from articles.models import Feed
from pipeline.feeds.scraping import scrape_feed
from tests.conftest import rss
from tests.support.local_http import serve

pytestmark = pytest.mark.django_db

DOCUMENT = rss([("r-1", "Redirected story", "It moved.")])


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    """/permanent -> 301 -> /permanent-2 -> 308 -> /feed.xml; /temporary -> 302 -> /feed.xml."""
    redirects = {
        "/permanent": (301, "/permanent-2"),
        "/permanent-2": (308, "/feed.xml"),
        "/temporary": (302, "/feed.xml"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path in redirects:
                status, target = redirects[self.path]
                self.send_response(status)
                self.send_header("Location", target)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(DOCUMENT)))
            self.end_headers()
            self.wfile.write(DOCUMENT)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base_url:
        yield base_url


def test_permanent_redirects_update_the_stored_url(redirecting_server):
    feed = Feed.objects.create(url=f"{redirecting_server}/permanent")
    assert scrape_feed(feed.pk).status == "ok"
    feed.refresh_from_db()
    assert feed.url == f"{redirecting_server}/feed.xml"


def test_a_temporary_redirect_keeps_the_stored_url(redirecting_server):
    feed = Feed.objects.create(url=f"{redirecting_server}/temporary")
    assert scrape_feed(feed.pk).status == "ok"
    feed.refresh_from_db()
    assert feed.url == f"{redirecting_server}/temporary"


def test_the_admin_shows_why_a_feed_was_disabled():
    feed = Feed.objects.create(url="https://gone.example.org/rss", title="Gone feed")
    for _ in range(10):
        feed.record_failure("HTTP 503 Service Unavailable", now=feed.next_fetch_at)
    feed.save()
    assert not feed.is_active
    boss = get_user_model().objects.create_superuser("admin", password="admin-password-1")
    browser = Client()
    browser.force_login(boss)
    for page in ["/admin/articles/feed/", f"/admin/articles/feed/{feed.pk}/change/"]:
        html = browser.get(page).content.decode()
        assert "10 consecutive failures, last: HTTP 503 Service Unavailable" in html, page
