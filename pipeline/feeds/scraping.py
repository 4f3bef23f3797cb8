"""Scrape one feed: fetch over HTTP, parse, store new articles, record the outcome on the feed."""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from articles.models import Feed
from pipeline.feeds.budget import BudgetExceeded, WorkCrashed, run_with_budget
from pipeline.feeds.fetching import FetchError, fetch_feed
from pipeline.feeds.markup_limits import MarkupLimits
from pipeline.feeds.parsing import ParsedFeed, ParseError, parse_feed
from pipeline.feeds.storing import upsert_entries

logger = logging.getLogger(__name__)


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
    except Exception as error:  # noqa: BLE001 - a fetcher bug hit by this server's answer: its failure, not a retry
        # fetch_feed turns every failure it knows into FetchError; anything else is still this feed's
        # failure (recorded, backed off), not a retried and then dead-lettered task.
        logger.exception("fetching feed %s raised", feed.url)
        reason = f"fetch failed: {type(error).__name__}: {error}"
        feed.record_failure(reason, now=now)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "error", error=reason)

    new_url = _movable_url(feed, fetched.permanent_url)
    if fetched.status == 304:
        feed.record_success(now=now, etag=fetched.etag, last_modified=fetched.last_modified, new_url=new_url)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "not_modified")

    parsed = _parse_within_budget(fetched.content, base_url=fetched.url, content_type=fetched.content_type)
    if isinstance(parsed, str):
        feed.record_failure(parsed, now=now)
        feed.save(update_fields=Feed.FETCH_STATE_FIELDS)
        return ScrapeOutcome(feed_id, "error", error=parsed, bytes=len(fetched.content))

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


def markup_limits() -> MarkupLimits:
    return MarkupLimits(
        max_depth=settings.FEED_MAX_NESTING_DEPTH,
        max_attributes=settings.FEED_MAX_ATTRIBUTES,
        max_field_chars=settings.FEED_MAX_FIELD_CHARS,
    )


def _parse_within_budget(content: bytes, *, base_url: str, content_type: str | None) -> ParsedFeed | str:
    """The parsed feed, or the reason it was refused (recorded as a failure like any failed fetch).

    Parse and sanitise run in a child process under the CPU and wall-clock budget
    (FEED_PARSE_CPU_SECONDS, FEED_PARSE_WALL_SECONDS): hostile markup can cost minutes in native code
    that the actor's time limit cannot interrupt, and must cost this feed a failure, not the worker.
    """
    parse = functools.partial(parse_feed, base_url=base_url, content_type=content_type, limits=markup_limits())
    try:
        return run_with_budget(parse, content)
    except ParseError as error:
        return str(error)
    except BudgetExceeded as error:
        return f"refused: parsing {error}"
    except MemoryError:
        return f"refused: parsing needed more than {settings.FEED_PARSE_MEMORY_MB} MB of memory"
    except WorkCrashed as error:
        return f"parsing failed: {error}"
    except Exception as error:  # noqa: BLE001 - a parser bug hit by this input: the feed's failure, not a retry
        logger.exception("parsing feed from %s raised", base_url)
        return f"parsing failed: {type(error).__name__}: {error}"


def _movable_url(feed: Feed, permanent_url: str | None) -> str | None:
    """The permanently-redirected URL to store, unless another feed already has it."""
    if not permanent_url or permanent_url == feed.url or len(permanent_url) > 2000:
        return None
    if Feed.objects.filter(url=permanent_url).exclude(pk=feed.pk).exists():
        return None
    return permanent_url
