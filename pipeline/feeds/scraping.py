"""Scrape one feed: fetch over HTTP, parse, store new articles, record the outcome on the feed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from articles.models import Feed
from pipeline.feeds.fetching import FetchError, fetch_feed
from pipeline.feeds.parsing import ParseError, parse_feed
from pipeline.feeds.storing import upsert_entries


@dataclass
class ScrapeOutcome:
    feed_id: int
    status: str  # "ok", "not_modified", "error", "skipped"
    entries: int = 0
    new_article_ids: list[int] = field(default_factory=list)
    error: str = ""
    bytes: int = 0  # of the response body (0 on 304 and on errors)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def scrape_feed(feed_id: int) -> ScrapeOutcome:
    """Poll one feed. Fetch and parse failures are recorded on the feed, never raised."""
    feed = Feed.objects.filter(pk=feed_id).first()
    if feed is None:
        return ScrapeOutcome(feed_id, "skipped", error="feed no longer exists")
    if not feed.is_active:
        return ScrapeOutcome(feed_id, "skipped", error=f"feed is disabled: {feed.disabled_reason}")

    now = timezone.now()
    try:
        fetched = fetch_feed(
            feed.url,
            etag=feed.etag or None,
            last_modified=feed.last_modified or None,
            allowed_private_hosts=settings.FEED_ALLOWED_PRIVATE_HOSTS,
            connect_timeout=settings.FEED_CONNECT_TIMEOUT_SECONDS,
            total_timeout=settings.FEED_TOTAL_TIMEOUT_SECONDS,
            max_bytes=settings.FEED_MAX_BYTES,
        )
    except FetchError as error:
        feed.record_failure(error.reason, now=now, retry_after=error.retry_after, permanent=error.permanent)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "error", error=error.reason)

    new_url = _movable_url(feed, fetched.permanent_url)
    if fetched.status == 304:
        feed.record_success(now=now, etag=fetched.etag, last_modified=fetched.last_modified, new_url=new_url)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "not_modified")

    try:
        parsed = parse_feed(fetched.content, base_url=fetched.url, content_type=fetched.content_type)
    except ParseError as error:
        feed.record_failure(str(error), now=now)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "error", error=str(error), bytes=len(fetched.content))

    with transaction.atomic():
        new_ids = upsert_entries(feed, parsed.entries, now=now)
        feed.record_success(
            now=now,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
            title=None if feed.title else parsed.title,
            site_url=parsed.link,
            new_url=new_url,
        )
        if parsed.warning:
            # Entries were kept; the complaint stays visible without counting as a failure.
            feed.last_error = f"parsed with errors: {parsed.warning}"[:2000]
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
    return ScrapeOutcome(
        feed_id, "ok", entries=len(parsed.entries), new_article_ids=new_ids, bytes=len(fetched.content)
    )


def _movable_url(feed: Feed, permanent_url: str | None) -> str | None:
    """The permanently-redirected URL to store, unless another feed already has it."""
    if not permanent_url or permanent_url == feed.url or len(permanent_url) > 2000:
        return None
    if Feed.objects.filter(url=permanent_url).exclude(pk=feed.pk).exists():
        return None
    return permanent_url
