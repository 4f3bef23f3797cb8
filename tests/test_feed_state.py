"""Feed.record_success / record_failure: backoff, disabling, and what a success resets (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.test import override_settings

from articles.models import Feed

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_failures_back_off_exponentially_up_to_the_cap():
    feed = Feed(url="https://example.invalid/feed", fetch_interval=600)
    waits = []
    with override_settings(FEED_MAX_BACKOFF_SECONDS=3600, FEED_DISABLE_AFTER_FAILURES=100):
        for _ in range(5):
            feed.record_failure("HTTP 500", now=NOW)
            waits.append((feed.next_fetch_at - NOW).total_seconds())
    assert waits == [600, 1200, 2400, 3600, 3600]
    assert feed.error_count == 5
    assert feed.last_error == "HTTP 500"
    assert feed.is_active


def test_retry_after_lengthens_the_wait():
    feed = Feed(url="https://example.invalid/feed", fetch_interval=60)
    feed.record_failure("HTTP 429", now=NOW, retry_after=900)
    assert feed.next_fetch_at == NOW + timedelta(seconds=900)


def test_gone_disables_at_once_and_says_why():
    feed = Feed(url="https://example.invalid/feed")
    feed.record_failure("HTTP 410 Gone", now=NOW, permanent=True)
    assert not feed.is_active
    assert "410" in feed.disabled_reason


def test_too_many_consecutive_failures_disable_the_feed():
    feed = Feed(url="https://example.invalid/feed")
    with override_settings(FEED_DISABLE_AFTER_FAILURES=3):
        feed.record_failure("timed out", now=NOW)
        feed.record_failure("timed out", now=NOW)
        assert feed.is_active
        feed.record_failure("timed out", now=NOW)
    assert not feed.is_active
    assert "3 consecutive failures" in feed.disabled_reason


def test_success_resets_errors_and_keeps_validators():
    feed = Feed(url="https://example.invalid/feed", fetch_interval=600, error_count=4, last_error="boom")
    feed.record_success(now=NOW, etag='"v2"', last_modified="Mon, 02 Nov 2026 10:00:00 GMT", title="News")
    assert (feed.error_count, feed.last_error, feed.etag, feed.title) == (0, "", '"v2"', "News")
    assert feed.next_fetch_at == NOW + timedelta(seconds=600)
