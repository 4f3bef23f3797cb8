"""Every Dramatiq actor, and how each is sent: the one place to read the whole job list.

Actors are thin, idempotent wrappers that take ids and call the plain functions of pipeline.feeds,
pipeline.understanding and pipeline.search.

Every actor states its own limits (Dramatiq's defaults — 20 retries over days, 10 minute time limit —
are wrong for this work): 3 retries starting at a 60 s backoff, a time limit, and an age past which
a queued message is stale and dropped (the next scheduled sweep re-creates whatever is still due).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import dramatiq
from django.conf import settings
from dramatiq.middleware import CurrentMessage

from articles.services import claim_due_feeds, claim_pending_articles
from pipeline.feeds import article_pages, scraping
from pipeline.feeds.fetch_log import record_fetches
from pipeline.search import stories, vector_index
from pipeline.taskqueue.broker import redis_client
from pipeline.taskqueue.enqueue import (
    clear_coalescing_flag,
    send_coalesced_now,
    send_coalesced_on_commit,
    send_later,
    send_on_commit,
)
from pipeline.taskqueue.names import Origin
from pipeline.taskqueue.politeness import HostBusy, HostPoliteness
from pipeline.taskqueue.queued_work import article_ids_in_queue
from pipeline.taskqueue.retention import purge_task_records as delete_old_task_records
from pipeline.understanding import processing, training

# The two queues (and their worker pools, scripts/supervisord.conf): I/O-bound fetching, and CPU- and
# memory-bound model work with one message per worker at a time.
SCRAPING = "scraping"
PROCESSING = "processing"
RETRAIN_FLAG = "retrain-topic-classifier"
# Articles whose page fetch ended are processed by one delayed sweep per burst: batches, not one each.
PROCESS_READY_FLAG = "process-ready-articles"
# Attempts at an article page before its failure counts for good (network errors, timeouts, 429, 5xx),
# spaced by PAGE_RETRY_BACKOFF_SECONDS × 2^(attempt-1), or the site's Retry-After when longer.
PAGE_FETCH_ATTEMPTS = 3
PAGE_RETRY_BACKOFF_SECONDS = 60

MINUTE = 60_000  # Dramatiq counts milliseconds
RETRY_POLICY: dict[str, Any] = {"max_retries": 3, "min_backoff": MINUTE, "max_backoff": 10 * MINUTE}
# Errors in the message itself (wrong argument types or values): retrying cannot fix them.
NOT_RETRYABLE = (TypeError, ValueError)

# What an actor returns: JSON kept for a while by the Results middleware and read by the commands.
TaskResult = dict[str, Any]


def _batches(ids: Sequence[int], size: int) -> list[list[int]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def enqueue_processing(article_ids: Sequence[int] | None, *, origin: str) -> list[str]:
    """Claim pending articles (these, or all that need it) and queue them in batches; returns task ids."""
    # A sweep asks the broker which claimed articles its messages still name: the others were lost.
    in_queue = (
        None
        if article_ids is not None
        else article_ids_in_queue(
            process_articles.broker, queue_name=PROCESSING, actor_name=process_articles.actor_name
        )
    )
    claimed = claim_pending_articles(article_ids, in_queue=in_queue)
    return [
        send_on_commit(process_articles, batch, origin=origin)
        for batch in _batches(claimed, settings.PROCESSING_BATCH_SIZE)
    ]


@dramatiq.actor(
    queue_name=SCRAPING,
    store_results=True,
    time_limit=2 * MINUTE,
    max_age=60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def scrape_feed(feed_id: int, chain: bool = True) -> TaskResult:
    """Scrape one feed; new articles go straight on to processing (the chain), whose task ids are returned."""
    outcome = scraping.scrape_feed(int(feed_id))
    record_fetches([outcome])
    follow_ups = _chain_new_articles(outcome.new_article_ids) if chain else []
    return {**outcome.as_dict(), "follow_up_task_ids": follow_ups}


@dramatiq.actor(
    queue_name=SCRAPING,
    store_results=True,
    # A batch's polls share the process's FEED_POLL_CONCURRENCY poll threads with its other batches,
    # each poll bounded by FEED_TOTAL_TIMEOUT_SECONDS for the fetch and FEED_PARSE_WALL_SECONDS for the
    # parse. However long its feeds take, a batch stops starting polls in time to finish inside this
    # limit and sends the feeds it did not start on in a new message (_poll_start_window).
    time_limit=10 * MINUTE,
    max_age=60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def scrape_feeds(feed_ids: list[int], chain: bool = True) -> TaskResult:
    """Scrape a batch of due feeds (the sweep's unit of work); their new articles are chained as one."""
    start_by = time.monotonic() + _poll_start_window()
    outcomes = scraping.scrape_feeds([int(i) for i in feed_ids], start_by=start_by)
    record_fetches(outcomes)
    new_ids = [article_id for outcome in outcomes for article_id in outcome.new_article_ids]
    follow_ups = _chain_new_articles(new_ids) if chain else []
    deferred = [outcome.feed_id for outcome in outcomes if outcome.status == "deferred"]
    if deferred:
        follow_ups.append(send_on_commit(scrape_feeds, deferred, chain, origin=Origin.PIPELINE))
    return {"outcomes": [outcome.as_dict() for outcome in outcomes], "follow_up_task_ids": follow_ups}


def _poll_start_window() -> float:
    """Seconds a batch may go on starting polls: its time limit less the longest a poll started at the
    last moment can take (fetch, then parse) and a minute to store what came back. Without it a batch
    of slow feeds behind busy poll threads was killed at the limit and retried whole, polls and all.
    Never under half the limit, so a misconfigured timeout cannot make every batch defer at once."""
    limit = scrape_feeds.options["time_limit"] / 1000
    last_poll = settings.FEED_TOTAL_TIMEOUT_SECONDS + settings.FEED_PARSE_WALL_SECONDS
    return max(limit - last_poll - 60, limit / 2)


def _chain_new_articles(article_ids: list[int]) -> list[str]:
    """Articles whose page is fetched go to processing when the fetch ends (scrape_article); the rest now."""
    if not article_ids:
        return []
    page_ids = article_pages.queue_page_fetches(article_ids)
    follow_ups = [send_on_commit(scrape_article, article_id, origin=Origin.PIPELINE) for article_id in page_ids]
    return follow_ups + enqueue_processing(article_ids, origin=Origin.PIPELINE)


def host_politeness() -> HostPoliteness:
    return HostPoliteness(
        redis_client(scrape_article.broker),
        max_concurrent=settings.HOST_MAX_CONCURRENT_REQUESTS,
        min_interval_ms=settings.HOST_MIN_INTERVAL_MS,
        max_wait_seconds=settings.HOST_MAX_WAIT_SECONDS,
        lease_ms=(2 * settings.ARTICLE_TOTAL_TIMEOUT_SECONDS + 10) * 1000,
        max_pause_seconds=settings.HOST_MAX_PAUSE_SECONDS,
    )


@dramatiq.actor(
    queue_name=SCRAPING,
    store_results=True,
    # Robots.txt and the page (each bounded by ARTICLE_TOTAL_TIMEOUT_SECONDS), extraction (its budget) and
    # the wait for a turn at the host (HOST_MAX_WAIT_SECONDS).
    time_limit=3 * MINUTE,
    max_age=6 * 60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def scrape_article(article_id: int, attempt: int = 1) -> TaskResult:
    """Fetch one article's page and store its text; once the fetch has ended (well, or failed for good),
    the article goes to processing in the next batch, whose task id is returned."""
    article_id, attempt = int(article_id), int(attempt)
    politeness = host_politeness()
    try:
        outcome = article_pages.fetch_article_page(
            article_id, gate=politeness.slot, final_attempt=attempt >= PAGE_FETCH_ATTEMPTS
        )
    except HostBusy as busy:
        # The host has its share of requests (or asked for a pause): this message comes back later, and
        # the wait does not count as an attempt.
        later = send_later(scrape_article, article_id, attempt, delay_seconds=busy.retry_in, origin=Origin.PIPELINE)
        return {"article_id": article_id, "status": "deferred", "error": str(busy), "follow_up_task_ids": [later]}
    if outcome.retry_after and outcome.host:
        politeness.pause(outcome.host, outcome.retry_after)
    result = outcome.as_dict()
    if outcome.status == "retry":
        backoff = max(PAGE_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1), outcome.retry_after or 0)
        later = send_later(scrape_article, article_id, attempt + 1, delay_seconds=backoff, origin=Origin.PIPELINE)
        return {**result, "attempt": attempt, "follow_up_task_ids": [later]}
    follow_ups = []
    if outcome.status != "skipped":
        follow_ups = [
            send_coalesced_now(
                process_pending_articles,
                flag=PROCESS_READY_FLAG,
                delay_seconds=settings.ARTICLE_PROCESS_DELAY_SECONDS,
                origin=Origin.PIPELINE,
            )
        ]
    return {**result, "attempt": attempt, "follow_up_task_ids": follow_ups}


@dramatiq.actor(
    queue_name=SCRAPING,
    store_results=True,
    time_limit=MINUTE,
    max_age=10 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def scrape_due_feeds() -> TaskResult:
    """Sweep: queue a scrape of every active feed whose next poll is due, FEED_POLL_BATCH_SIZE a message."""
    feed_ids = claim_due_feeds()
    task_ids = [
        send_on_commit(scrape_feeds, batch, origin=Origin.PIPELINE)
        for batch in _batches(feed_ids, settings.FEED_POLL_BATCH_SIZE)
    ]
    return {"feeds": feed_ids, "follow_up_task_ids": task_ids}


@dramatiq.actor(
    queue_name=PROCESSING,
    store_results=True,
    time_limit=10 * MINUTE,
    max_age=6 * 60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def process_articles(article_ids: list[int]) -> TaskResult:
    """Embed and classify a batch of articles (those still pending), then group them into stories."""
    ids = [int(i) for i in article_ids]
    # The message id is the claim: a re-delivery of this message takes its rows back at once.
    message = CurrentMessage.get_current_message()
    outcome = processing.process_articles(ids, claim=message.message_id if message else None)
    # After processing has committed: stories are found through the vector index, which reads Postgres.
    return {"article_ids": len(article_ids), **outcome, **stories.assign_stories(ids)}


@dramatiq.actor(
    queue_name=PROCESSING,
    store_results=True,
    time_limit=MINUTE,
    max_age=10 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def process_pending_articles() -> TaskResult:
    """Sweep: queue every pending article not already queued (or queued so long ago it was lost)."""
    # Cleared before the sweep reads: an article whose page fetch ends from now on asks for the next one.
    clear_coalescing_flag(process_pending_articles.broker, PROCESS_READY_FLAG)
    task_ids = enqueue_processing(None, origin=Origin.PIPELINE)
    return {"batches": len(task_ids), "follow_up_task_ids": task_ids}


@dramatiq.actor(
    queue_name=PROCESSING,
    store_results=True,
    time_limit=10 * MINUTE,
    max_age=30 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def save_index() -> TaskResult:
    """Reconcile this worker's vector index with Postgres and write it to this machine's cache file."""
    return vector_index.save_index()


@dramatiq.actor(
    queue_name=PROCESSING,
    store_results=True,
    time_limit=10 * MINUTE,
    max_age=60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def retrain_topic_classifier() -> TaskResult:
    """Train the supervised topic model on people's labels (skipped when they have not changed)."""
    # Cleared before the labels are read: a label stored from now on queues the next training.
    clear_coalescing_flag(retrain_topic_classifier.broker, RETRAIN_FLAG)
    return training.retrain_topic_classifier().as_dict()


@dramatiq.actor(queue_name=SCRAPING, store_results=True, time_limit=10 * MINUTE, max_age=60 * MINUTE, **RETRY_POLICY)
def purge_task_records() -> TaskResult:
    """Delete task records older than TASK_RECORD_RETENTION_DAYS, in short batches."""
    return {"deleted": delete_old_task_records()}


def request_retraining() -> None:
    """After the current transaction commits, queue one retraining unless one is already waiting.

    Labels come in bursts (someone labelling a page of articles), so the first label of a burst queues a
    training delayed by RETRAIN_DELAY_SECONDS and the rest are coalesced into it; a label stored while
    it runs queues the next one.
    """
    send_coalesced_on_commit(
        retrain_topic_classifier, flag=RETRAIN_FLAG, delay_seconds=settings.RETRAIN_DELAY_SECONDS, origin=Origin.LABELS
    )


def clear_retraining_request() -> None:
    clear_coalescing_flag(retrain_topic_classifier.broker, RETRAIN_FLAG)
