"""The recent polls of each feed (FeedFetch rows), kept for the admin's feed page."""

from __future__ import annotations

from datetime import datetime

from articles.models import FeedFetch
from pipeline.feeds.scraping import ScrapeOutcome

# Polls kept per feed: a day of polls at the default 10-minute sweep would be 144; a window of the
# latest is what an operator looks at when a feed misbehaves.
KEEP_PER_FEED = 20


def record_fetch(outcome: ScrapeOutcome, *, started_at: datetime, duration_seconds: float) -> None:
    """Store one poll of an existing feed and drop that feed's polls beyond the newest KEEP_PER_FEED."""
    if outcome.status == "skipped":
        return  # nothing was fetched (the feed is gone or disabled)
    FeedFetch.objects.create(
        feed_id=outcome.feed_id,
        started_at=started_at,
        status=outcome.status,
        bytes=outcome.bytes,
        duration_ms=int(duration_seconds * 1000),
        entries=outcome.entries,
        new_articles=len(outcome.new_article_ids),
        error=outcome.error[:2000],
    )
    older = FeedFetch.objects.filter(feed_id=outcome.feed_id).values_list("id", flat=True)[KEEP_PER_FEED:]
    FeedFetch.objects.filter(id__in=list(older)).delete()
