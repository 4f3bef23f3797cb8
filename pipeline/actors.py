"""Every Dramatiq actor, and how each is sent: the one place to read the whole job list.

Actors are thin, idempotent wrappers that take ids and call the plain functions of pipeline.feeds,
pipeline.understanding and pipeline.search.

Every actor states its own limits (Dramatiq's defaults — 20 retries over days, 10 minute time limit —
are wrong for this work): 3 retries starting at a 60 s backoff, a time limit, and an age past which
a queued message is stale and dropped (the next scheduled sweep re-creates whatever is still due).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dramatiq
from django.conf import settings
from dramatiq.middleware import CurrentMessage

from articles.services import claim_due_feeds, claim_pending_articles
from pipeline.feeds import scraping
from pipeline.search import stories, vector_index
from pipeline.taskqueue.enqueue import clear_coalescing_flag, send_coalesced_on_commit, send_on_commit
from pipeline.taskqueue.names import Origin
from pipeline.taskqueue.queued_work import article_ids_in_queue
from pipeline.taskqueue.retention import purge_task_records as delete_old_task_records
from pipeline.understanding import processing, training

# The two queues (and their worker pools, scripts/supervisord.conf): I/O-bound fetching, and CPU- and
# memory-bound model work with one message per worker at a time.
SCRAPING = "scraping"
PROCESSING = "processing"
RETRAIN_FLAG = "retrain-topic-classifier"

MINUTE = 60_000  # Dramatiq counts milliseconds
RETRY_POLICY: dict[str, Any] = {"max_retries": 3, "min_backoff": MINUTE, "max_backoff": 10 * MINUTE}
# Errors in the message itself (wrong argument types or values): retrying cannot fix them.
NOT_RETRYABLE = (TypeError, ValueError)


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
def scrape_feed(feed_id: int, chain: bool = True) -> dict[str, object]:
    """Scrape one feed; new articles go straight on to processing (the chain), whose task ids are returned."""
    outcome = scraping.scrape_feed(int(feed_id))
    follow_ups = enqueue_processing(outcome.new_article_ids, origin=Origin.PIPELINE) if chain else []
    return {**outcome.as_dict(), "follow_up_task_ids": follow_ups}


@dramatiq.actor(
    queue_name=SCRAPING,
    store_results=True,
    time_limit=MINUTE,
    max_age=10 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def scrape_due_feeds() -> dict[str, object]:
    """Sweep: queue a scrape of every active feed whose next poll is due."""
    feed_ids = claim_due_feeds()
    task_ids = [send_on_commit(scrape_feed, feed_id, origin=Origin.PIPELINE) for feed_id in feed_ids]
    return {"feeds": feed_ids, "follow_up_task_ids": task_ids}


@dramatiq.actor(
    queue_name=PROCESSING,
    store_results=True,
    time_limit=10 * MINUTE,
    max_age=6 * 60 * MINUTE,
    throws=NOT_RETRYABLE,
    **RETRY_POLICY,
)
def process_articles(article_ids: list[int]) -> dict[str, object]:
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
def process_pending_articles() -> dict[str, object]:
    """Sweep: queue every pending article not already queued (or queued so long ago it was lost)."""
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
def save_index() -> dict[str, object]:
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
def retrain_topic_classifier() -> dict[str, object]:
    """Train the supervised topic model on people's labels (skipped when they have not changed)."""
    # Cleared before the labels are read: a label stored from now on queues the next training.
    clear_coalescing_flag(retrain_topic_classifier.broker, RETRAIN_FLAG)
    return training.retrain_topic_classifier().as_dict()


@dramatiq.actor(queue_name=SCRAPING, store_results=True, time_limit=10 * MINUTE, max_age=60 * MINUTE, **RETRY_POLICY)
def purge_task_records() -> dict[str, object]:
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
