"""Malformed response headers: each is ignored sensibly or ends as a recorded feed failure, never an
exception out of the fetch (which would retry the task and then dead-letter it, recording nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.feeds import headers
from pipeline.feeds.scraping import scrape_feed
from tests.conftest import rss
from tests.support.local_http import serve

NOW = datetime(2026, 5, 14, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        (" 30 ", 30),
        ("Thu, 14 May 2026 12:01:00 GMT", 60),
        ("Thu, 14 May 2026 11:00:00 GMT", 0),  # already past
        ("99999999999999999999", headers.MAX_RETRY_AFTER_SECONDS),
        ("Fri, 31 Dec 9999 23:59:59 GMT", headers.MAX_RETRY_AFTER_SECONDS),
        ("¹", None),  # str.isdigit() is true for it, int() refuses it
        ("٣٠", None),  # Arabic-Indic digits: int() would read 30
        ("soon", None),
        ("-5", None),
        ("1e9", None),
        ("Thu, 14 May 2026 25:61:00 GMT", None),
        ("x" * 10_000, None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value, seconds):
    assert headers.retry_after_seconds(value, now=NOW) == seconds


@pytest.mark.parametrize(
    ("value", "length"), [("10", 10), ("¹", None), ("١٠", None), ("-1", None), ("1 0", None), ("9" * 40, None)]
)
def test_declared_length_takes_ascii_digits_only(value, length):
    assert headers.declared_length(value) == length


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("application/rss+xml; charset=UTF-8", "application/rss+xml; charset=UTF-8"),
        ('text/xml; charset="iso-8859-1"', "text/xml; charset=iso-8859-1"),
        ("Text/XML", "text/xml"),
        ("text/xml; charset=utf-999", "text/xml"),  # no such codec: the document decides
        ("text/xml; charset=rot13", "text/xml"),  # a codec, but not a character encoding
        ("text/xml; charset=" + "x" * 500, None),
        ("not a media type", None),
        (None, None),
    ],
)
def test_content_type_keeps_only_a_usable_charset(value, parsed):
    assert headers.content_type(value) == parsed


@pytest.mark.parametrize(
    ("value", "kept"), [('"v1"', '"v1"'), ("x" * 501, None), ('"caf\u00e9"', None), ("a\tb", None)]
)
def test_validators_are_stored_only_when_they_can_be_sent_back(value, kept):
    assert headers.validator(value) == kept


# --- through a real server and scrape_feed ----------------------------------------------------------


class RawHeaders:
    """A local server answering every GET with the status, headers and body a test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.headers: list[tuple[str, str]] = []
        self.body = b""


@pytest.fixture
def raw_server() -> Iterator[tuple[RawHeaders, str]]:
    answer = RawHeaders()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(answer.status)
            for name, value in answer.headers:
                # UTF-8 on the wire (send_header would refuse what latin-1 cannot encode); httpx decodes it.
                self._headers_buffer.append(f"{name}: {value}\r\n".encode())  # type: ignore[attr-defined]
            self.end_headers()
            self.wfile.write(answer.body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base_url:
        yield answer, f"{base_url}/feed.xml"


@pytest.mark.django_db
@pytest.mark.parametrize("retry_after", ["¹", "soon", "Thu, 14 May 2026 25:61:00 GMT", "٣٠"])
def test_a_malformed_retry_after_is_a_recorded_failure_with_the_feeds_own_backoff(raw_server, retry_after):
    answer, url = raw_server
    answer.status, answer.headers = 429, [("Retry-After", retry_after), ("Content-Length", "0")]
    feed = Feed.objects.create(url=url)
    before = timezone.now()
    outcome = scrape_feed(feed.pk)
    assert (outcome.status, outcome.error) == ("error", "HTTP 429 Too Many Requests")
    feed.refresh_from_db()
    assert feed.error_count == 1 and feed.last_error == "HTTP 429 Too Many Requests"
    assert before + timedelta(seconds=feed.fetch_interval) <= feed.next_fetch_at
    assert feed.next_fetch_at <= timezone.now() + timedelta(seconds=feed.fetch_interval)


@pytest.mark.django_db
def test_a_retry_after_centuries_away_backs_off_no_further_than_the_maximum(raw_server, settings):
    answer, url = raw_server
    answer.status, answer.headers = 503, [("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT"), ("Content-Length", "0")]
    feed = Feed.objects.create(url=url)
    scrape_feed(feed.pk)
    feed.refresh_from_db()
    assert feed.error_count == 1
    assert feed.next_fetch_at <= timezone.now() + timedelta(seconds=settings.FEED_MAX_BACKOFF_SECONDS)


@pytest.mark.django_db
@pytest.mark.parametrize("length", ["¹", "-1", "lots"])
def test_a_malformed_content_length_is_a_recorded_failure(raw_server, length):
    answer, url = raw_server
    answer.headers, answer.body = [("Content-Length", length)], rss([("g", "T", "S")])
    feed = Feed.objects.create(url=url)
    outcome = scrape_feed(feed.pk)
    assert outcome.status == "error" and "Content-Length" in outcome.error
    feed.refresh_from_db()
    assert feed.error_count == 1 and feed.next_fetch_at > timezone.now()


@pytest.mark.django_db
def test_odd_charsets_and_validators_are_ignored_and_the_feed_is_read(raw_server):
    answer, url = raw_server
    answer.body = rss([("g-1", "Caf\u00e9 opens", "Summary")])
    answer.headers = [
        ("Content-Type", "application/rss+xml; charset=rot13"),
        ("Content-Length", str(len(answer.body))),
        ("ETag", '"' + "e" * 1000 + '"'),
        ("Last-Modified", "Thu, 14 May 2026 12:00:00 GMT¹"),
    ]
    feed = Feed.objects.create(url=url)
    assert scrape_feed(feed.pk).status == "ok"
    assert Article.objects.get(feed=feed).title == "Caf\u00e9 opens"
    feed.refresh_from_db()
    assert (feed.etag, feed.last_modified, feed.error_count) == ("", "", 0)
