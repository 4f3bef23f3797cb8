"""Claim, embed with no transaction open, write conditionally: what other writers see meanwhile.

Committed transactions (transaction=True), as in production: while the model runs, another connection
works on the same rows for real, the way a person labelling in the admin or a second run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from articles.models import Article, Feed, Topic
from pipeline.understanding import embedding
from pipeline.understanding.processing import CLAIM_TTL, process_articles

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def articles() -> list[Article]:
    Topic.objects.create(name="sport", description="Sport: football, tennis, results")
    Topic.objects.create(name="business", description="Business: companies, markets, economy")
    feed = Feed.objects.create(url="https://example.invalid/feed.xml")
    titles = ["Striker scores twice as United win the derby", "Shares fall as the central bank raises rates"]
    return [Article.objects.create(feed=feed, guid=str(i), title=t) for i, t in enumerate(titles)]


@pytest.fixture
def other_connection() -> Iterator[psycopg.Connection]:
    """A second Postgres session, like another web or worker process."""
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:
        yield other


@pytest.fixture
def while_embedding(monkeypatch) -> Callable[[Callable[[], None]], None]:
    """Run a callback while the model is busy with the batch (the real model runs right after)."""

    def install(callback: Callable[[], None]) -> None:
        real = embedding.embed_texts

        def embed_texts(texts: list[str]):  # type: ignore[no-untyped-def]
            callback()
            return real(texts)

        monkeypatch.setattr(embedding, "embed_texts", embed_texts)

    return install


def test_no_row_lock_or_transaction_is_held_while_the_model_runs(articles, other_connection, while_embedding):
    seen = {}

    def lock_from_elsewhere() -> None:
        seen["in_transaction"] = connection.in_atomic_block
        with other_connection.transaction():
            # NOWAIT fails at once if processing still held the row locked.
            rows = other_connection.execute(
                f"SELECT id FROM {Article._meta.db_table} WHERE id = ANY(%s) FOR UPDATE NOWAIT",
                [[a.pk for a in articles]],
            ).fetchall()
        seen["locked"] = len(rows)

    while_embedding(lock_from_elsewhere)
    assert process_articles([a.pk for a in articles]) == {"processed": 2, "failed": 0}
    assert seen == {"in_transaction": False, "locked": 2}


def test_a_label_given_while_the_model_runs_is_kept(articles, other_connection, while_embedding):
    business = Topic.objects.get(name="business")
    striker = articles[0]

    def label_from_the_admin() -> None:
        other_connection.execute(
            f"UPDATE {Article._meta.db_table} SET topic_id = %s, topic_confidence = 1.0, classified_by = %s WHERE id = %s",
            [business.pk, Article.ClassifiedBy.HUMAN, striker.pk],
        )

    while_embedding(label_from_the_admin)
    process_articles([a.pk for a in articles])
    striker.refresh_from_db()
    assert striker.status == Article.Status.PROCESSED and striker.embedding is not None
    assert (striker.topic, striker.topic_confidence, striker.classified_by) == (business, 1.0, "human")


def test_rows_another_run_finished_meanwhile_are_not_written_twice(articles, other_connection, while_embedding):
    first = articles[0]

    def another_run_finishes_one() -> None:
        other_connection.execute(
            f"UPDATE {Article._meta.db_table} SET status = %s, processing_error = 'by the other run' WHERE id = %s",
            [Article.Status.FAILED, first.pk],
        )

    while_embedding(another_run_finishes_one)
    assert process_articles([a.pk for a in articles]) == {"processed": 1, "failed": 0}
    first.refresh_from_db()
    assert (first.status, first.processing_error, first.embedding) == (Article.Status.FAILED, "by the other run", None)


def test_a_live_claim_is_left_alone_its_own_message_takes_it_back_and_a_stale_one_is_taken_over(articles):
    ids = [a.pk for a in articles]
    Article.objects.filter(pk__in=ids).update(claimed_by="message-a", claimed_at=timezone.now())

    assert process_articles(ids, claim="message-b") == {"processed": 0, "failed": 0}
    assert set(Article.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Article.Status.PENDING}

    # The same message delivered again (its worker died) takes its rows back at once.
    assert process_articles(ids[:1], claim="message-a") == {"processed": 1, "failed": 0}
    # A claim older than CLAIM_TTL belongs to a run that died: another run takes it over.
    Article.objects.filter(pk=ids[1]).update(claimed_at=timezone.now() - CLAIM_TTL - timedelta(seconds=1))
    assert process_articles(ids[1:], claim="message-b") == {"processed": 1, "failed": 0}
    assert set(Article.objects.filter(pk__in=ids).values_list("claimed_by", flat=True)) == {""}
