"""Scrape feeds, one or a batch: fetch over HTTP, parse, store new articles, record the outcome on each feed."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from articles.models import Feed
from pipeline.feeds.budget import BudgetExceeded, WorkCrashed, run_with_budget
from pipeline.feeds.fetching import FetchError, FetchResult, fetch_feed
from pipeline.feeds.markup_limits import MarkupLimits
from pipeline.feeds.parsing import ParsedFeed, ParseError, parse_feed
from pipeline.feeds.storing import save_poll_states, upsert_entries

logger = logging.getLogger(__name__)


@dataclass
class ScrapeOutcome:
    feed_id: int
    status: str  # "ok", "not_modified", "error", "skipped", "deferred" (not started in the batch's time)
    entries: int = 0
    new_article_ids: list[int] = field(default_factory=list)
    error: str = ""
    bytes: int = 0  # of the response body (0 on 304 and on errors)
    duration_ms: int = 0  # the poll, from the request to the feed's state written (or set, in a batch)
    started_at: datetime | None = None  # for the poll log (not in the task's JSON result)

    def as_dict(self) -> dict[str, object]:
        # Spelled out: dataclasses.asdict deep-copies field by field, and a batch builds 20 of these for
        # its result (~4 % of a worker's time on the scraping bench's 304 pass, py-spy --gil).
        return {
            "feed_id": self.feed_id,
            "status": self.status,
            "entries": self.entries,
            "new_article_ids": list(self.new_article_ids),
            "error": self.error,
            "bytes": self.bytes,
            "duration_ms": self.duration_ms,
        }


def scrape_feed(feed_id: int) -> ScrapeOutcome:
    """Poll one feed. Fetch and parse failures are recorded on the feed, never raised."""
    [outcome] = scrape_feeds([feed_id])
    return outcome


def scrape_feeds(feed_ids: Sequence[int], *, start_by: float | None = None) -> list[ScrapeOutcome]:
    """Poll feeds (one each) on this process's poll threads; outcomes in the order the polls finished.

    What a batch saves over one message per feed is the bookkeeping of the common case, a feed that
    has not changed (304) or failed: one SELECT for the batch and one UPDATE for all of those feeds,
    not two statements and a task each. A feed that changed is stored as scrape_feed stores it
    (its entries and state in one transaction), as soon as its poll is done.

    `start_by` (a time.monotonic() value): a feed whose poll has not started by then is not polled
    and comes back "deferred", its state untouched, for the caller to send on. Polls already running
    are waited for; each is bounded by its fetch and parse deadlines.
    """
    ids = list(dict.fromkeys(feed_ids))
    feeds = Feed.objects.in_bulk(ids)
    outcomes = [_skipped(feed_id, feeds.get(feed_id)) for feed_id in ids if not _pollable(feeds.get(feed_id))]
    polled = [feeds[feed_id] for feed_id in ids if _pollable(feeds.get(feed_id))]
    if not polled:
        return outcomes
    unsaved: list[Feed] = []
    # The poll threads only fetch and parse (the parse runs in a budgeted child process): every
    # database statement stays on this thread and its connection.
    started = {_poll_threads().submit(_poll, feed): feed for feed in polled}
    for future in _as_finished(started, start_by):
        feed = started[future]
        outcome = _record(feed, future.result())
        if outcome.status != "ok":
            unsaved.append(feed)
        outcomes.append(outcome)
    save_poll_states(unsaved)
    deferred = [ScrapeOutcome(started[future].pk, "deferred") for future in started if future.cancelled()]
    return [_timed(outcome) if outcome.status != "ok" else outcome for outcome in outcomes] + deferred


def _as_finished(futures: Collection[Future[_Polled]], start_by: float | None) -> Iterator[Future[_Polled]]:
    """The polls as they finish. At `start_by` those still waiting for a poll thread are cancelled
    (the other batches of the process held the threads): the rest are waited for as before."""
    waiting = set(futures)
    timeout = None if start_by is None else max(0.0, start_by - time.monotonic())
    try:
        for future in as_completed(futures, timeout=timeout):
            waiting.discard(future)
            yield future
    except TimeoutError:  # raised by as_completed only: the loop's body runs outside this generator
        yield from as_completed([future for future in waiting if not future.cancel()])


@functools.cache
def _poll_threads() -> ThreadPoolExecutor:
    """This process's FEED_POLL_CONCURRENCY poll threads, shared by its worker threads' batches.

    One pool for the process, not one per batch: starting 8 threads for every batch cost more than the
    304 polls themselves (each start waits for the new thread to get the GIL). It also bounds what a
    process holds in flight (FEED_POLL_CONCURRENCY bodies of up to FEED_MAX_BYTES) however many worker
    threads it runs. Created on first use, so inside the worker process, after any fork."""
    return ThreadPoolExecutor(max_workers=settings.FEED_POLL_CONCURRENCY, thread_name_prefix="feed-poll")


@dataclass
class _Polled:
    """What one poll brought back, before anything is written: the response (its body dropped once
    parsed) and the parsed feed, or why the poll failed."""

    started_at: datetime
    fetched: FetchResult | None = None
    parsed: ParsedFeed | None = None
    failure: str = ""
    retry_after: float | None = None
    permanent: bool = False
    bytes: int = 0


def _pollable(feed: Feed | None) -> bool:
    return feed is not None and feed.is_active


def _skipped(feed_id: int, feed: Feed | None) -> ScrapeOutcome:
    if feed is None:
        return ScrapeOutcome(feed_id, "skipped", error="feed no longer exists")
    return ScrapeOutcome(feed_id, "skipped", error=f"feed is disabled: {feed.disabled_reason}")


def _timed(outcome: ScrapeOutcome) -> ScrapeOutcome:
    """The outcome with its duration up to now, when its feed's state is written."""
    if outcome.started_at is not None:
        outcome.duration_ms = max(0, int((timezone.now() - outcome.started_at).total_seconds() * 1000))
    return outcome


def _poll(feed: Feed) -> _Polled:
    """Fetch and parse one feed without touching the database (so any thread may run it)."""
    started_at = timezone.now()
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
        return _Polled(started_at, failure=error.reason, retry_after=error.retry_after, permanent=error.permanent)
    except Exception as error:  # noqa: BLE001 - a fetcher bug hit by this server's answer: its failure, not a retry
        # fetch_feed turns every failure it knows into FetchError; anything else is still this feed's
        # failure (recorded, backed off), not a retried and then dead-lettered task.
        logger.exception("fetching feed %s raised", feed.url)
        return _Polled(started_at, failure=f"fetch failed: {type(error).__name__}: {error}")
    if fetched.status == 304:
        return _Polled(started_at, fetched=fetched)
    parsed = _parse_within_budget(fetched.content, base_url=fetched.url, content_type=fetched.content_type)
    body = len(fetched.content)
    fetched = replace(fetched, content=b"")  # a batch keeps its polls until stored: not their bodies
    if isinstance(parsed, str):
        return _Polled(started_at, fetched=fetched, failure=parsed, bytes=body)
    return _Polled(started_at, fetched=fetched, parsed=parsed, bytes=body)


def _record(feed: Feed, polled: _Polled) -> ScrapeOutcome:
    """Apply a poll to the feed. A changed feed is saved with its new entries in one transaction
    (status "ok", timed); any other outcome only sets the feed's fields, for the caller to save."""
    fetched, now = polled.fetched, polled.started_at
    if polled.failure or fetched is None:
        reason = polled.failure or "fetch failed"
        feed.record_failure(reason, now=now, retry_after=polled.retry_after, permanent=polled.permanent)
        return ScrapeOutcome(feed.pk, "error", error=reason, bytes=polled.bytes, started_at=now)
    new_url = _movable_url(feed, fetched.permanent_url)
    parsed = polled.parsed
    if parsed is None:  # 304
        feed.record_success(now=now, etag=fetched.etag, last_modified=fetched.last_modified, new_url=new_url)
        return ScrapeOutcome(feed.pk, "not_modified", started_at=now)
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
    outcome = ScrapeOutcome(
        feed.pk, "ok", entries=len(parsed.entries), new_article_ids=new_ids, bytes=polled.bytes, started_at=now
    )
    return _timed(outcome)


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
