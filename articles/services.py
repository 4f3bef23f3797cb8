"""Workflows over feeds and articles that views, actors and commands share."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from articles.models import Article, Feed, Interaction

# Articles handed to the processing queue are not handed again by the sweep for this long, so a
# backlog is not enqueued twice; after it, the sweep assumes the message was lost and re-sends.
PROCESSING_CLAIM_TTL = timedelta(minutes=30)
# Between a claim's commit and its message reaching Redis (milliseconds): a sweep that finds the
# article claimed but not yet in the queue within this window leaves it alone.
PROCESSING_ENQUEUE_GRACE = timedelta(minutes=1)
# An article waiting for its page (page_status queued) is left out of processing until its fetch ends;
# one still waiting this long after it was asked for lost its message and is processed from feed text.
# Longer than a fetch's attempts with their backoff (pipeline.actors.scrape_article: ~7 minutes).
PAGE_FETCH_WAIT = timedelta(minutes=30)

_validate_url = URLValidator(schemes=["http", "https"])

# claim_due_feeds; the inner SELECT uses feed_due_idx (WHERE is_active AND next_fetch_at <= …).
_CLAIM_DUE_FEEDS = f"""
UPDATE {Feed._meta.db_table} SET next_fetch_at = %(now)s + fetch_interval * interval '1 second'
WHERE id IN (
    SELECT id FROM {Feed._meta.db_table}
    WHERE is_active AND next_fetch_at <= %(due)s
    ORDER BY id
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


def normalise_feed_url(url: str) -> str:
    """Strip whitespace and check the URL is http(s); raises ValidationError with a readable message."""
    url = (url or "").strip()
    _validate_url(url)
    return url


def add_feed(url: str, *, title: str = "") -> tuple[Feed, bool]:
    """Create the feed (due at once) or return the existing one with that URL."""
    url = normalise_feed_url(url)
    feed, created = Feed.objects.get_or_create(url=url, defaults={"title": title[:500]})
    return feed, created


def claim_due_feeds(*, now: datetime | None = None, slack: timedelta = timedelta(seconds=60)) -> list[int]:
    """Ids of active feeds due for a poll, pushed one interval ahead so the next sweep skips them.

    One statement for any number of feeds (at 10,000 feeds an UPDATE per feed was 10,000 round
    trips inside one transaction). SKIP LOCKED leaves a feed another sweep is claiming to that sweep.
    The slack lets a feed polled a few seconds after the last sweep count as due at the next one.
    A claimed feed whose scrape message is lost is simply due again one interval later.
    """
    now = now or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_DUE_FEEDS, {"now": now, "due": now + slack})
        return sorted(row[0] for row in cursor.fetchall())


def claim_pending_articles(
    article_ids: Sequence[int] | None = None,
    *,
    now: datetime | None = None,
    limit: int = 10_000,
    in_queue: Collection[int] | None = None,
) -> list[int]:
    """Mark pending articles as handed to the processing queue; returns the ids claimed.

    With `article_ids`, claims those (a scrape's new articles); without, sweeps for pending articles
    never handed over, or handed over but lost. `in_queue` (the ids the broker's messages still name,
    see pipeline.taskqueue.queued_work) says which were lost: any claimed more than PROCESSING_ENQUEUE_GRACE ago
    and not in it — so a Redis that lost its queues costs one sweep period, not the claim TTL. When the
    broker cannot tell (None), a claim older than PROCESSING_CLAIM_TTL is presumed lost. Articles
    waiting for their page are left for when the fetch ends (or for PAGE_FETCH_WAIT, if it was lost).
    """
    now = now or timezone.now()
    pending = Article.objects.filter(status=Article.Status.PENDING).exclude(
        page_status=Article.PageStatus.QUEUED, page_requested_at__gt=now - PAGE_FETCH_WAIT
    )
    if article_ids is not None:
        pending = pending.filter(pk__in=list(article_ids))
    elif in_queue is not None:
        lost = Q(queued_at__lt=now - PROCESSING_ENQUEUE_GRACE) & ~Q(pk__in=list(in_queue))
        pending = pending.filter(Q(queued_at__isnull=True) | lost)
    else:
        stale = now - PROCESSING_CLAIM_TTL
        pending = pending.filter(Q(queued_at__isnull=True) | Q(queued_at__lt=stale))
    with transaction.atomic():
        ids = list(pending.select_for_update(skip_locked=True).order_by("id").values_list("id", flat=True)[:limit])
        Article.objects.filter(pk__in=ids).update(queued_at=now)
    return ids


def requeue_for_processing(article: Article, *, now: datetime | None = None) -> None:
    """Make a processed (or failed) article pending again and claim it for the message the caller sends."""
    Article.objects.filter(pk=article.pk).update(
        status=Article.Status.PENDING, processing_error="", queued_at=now or timezone.now(), claimed_by=""
    )


# Liking and dismissing contradict each other: recording one withdraws the other.
_OPPOSITE_KIND = {Interaction.Kind.LIKE: Interaction.Kind.DISMISS, Interaction.Kind.DISMISS: Interaction.Kind.LIKE}


def record_interaction(user_id: int, article: Article, kind: str) -> tuple[Interaction, bool]:
    """Record that the user read, liked or dismissed the article; returns (interaction, created).

    Idempotent per kind: the unique (user, article, kind) key makes a repeat return the first record.
    """
    with transaction.atomic():
        interaction, created = Interaction.objects.get_or_create(user_id=user_id, article=article, kind=kind)
        opposite = _OPPOSITE_KIND.get(Interaction.Kind(kind))
        if created and opposite:
            Interaction.objects.filter(user_id=user_id, article=article, kind=opposite).delete()
    return interaction, created


def validation_message(error: ValidationError) -> str:
    return "; ".join(error.messages)
