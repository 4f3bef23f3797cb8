"""The batch paths cost a fixed number of queries, whatever the batch size: a regression to one query
per feed or per article (an N+1) fails here.

Each path runs at two sizes with the same exact count, so the count cannot hide a per-row statement
(the larger size would add as many queries as rows), and the exact number names what each step sends.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from articles.models import Article, Feed, FeedFetch, Topic
from articles.services import claim_due_feeds, claim_pending_articles
from pipeline import actors
from pipeline.feeds.fetch_log import record_fetches
from pipeline.feeds.scraping import scrape_feed, scrape_feeds
from pipeline.understanding.processing import process_articles
from pipeline.understanding.topic_models import topic_model_in_force
from tests.conftest import rss

pytestmark = pytest.mark.django_db

SIZES = (3, 30)


def _feeds(count: int, *, due: bool = True) -> list[Feed]:
    when = timezone.now() - timedelta(minutes=1) if due else timezone.now() + timedelta(hours=1)
    return Feed.objects.bulk_create(
        Feed(url=f"https://example.invalid/{'due' if due else 'later'}/{i}", next_fetch_at=when) for i in range(count)
    )


def _pending_articles(count: int) -> list[int]:
    feed = Feed.objects.create(url="https://example.invalid/articles.xml")
    articles = Article.objects.bulk_create(
        Article(feed=feed, guid=f"g-{i}", title=f"Striker scores twice in derby number {i}", summary="Match report.")
        for i in range(count)
    )
    return [a.pk for a in articles]


@pytest.mark.parametrize("count", SIZES)
def test_claiming_due_feeds_is_one_statement(count, django_assert_num_queries):
    due = _feeds(count)
    _feeds(2, due=False)
    with django_assert_num_queries(1):
        claimed = claim_due_feeds()
    assert claimed == sorted(f.pk for f in due)
    # Pushed one interval ahead: the next sweep finds nothing.
    assert claim_due_feeds() == []
    assert all(f.next_fetch_at > timezone.now() for f in Feed.objects.filter(pk__in=claimed))


@pytest.mark.parametrize("count", SIZES)
def test_the_due_feed_sweep_actor_costs_the_same_for_any_number_of_feeds(
    count, broker, settings, django_assert_num_queries, django_capture_on_commit_callbacks
):
    settings.FEED_POLL_BATCH_SIZE = 5
    _feeds(count)
    with django_assert_num_queries(1), django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_due_feeds()
    assert len(result["feeds"]) == count
    # FEED_POLL_BATCH_SIZE feeds a message (5 here: 3 feeds are one message, 30 are six).
    assert broker.client.llen(f"{broker.namespace}:scraping") == -(-count // settings.FEED_POLL_BATCH_SIZE)


@pytest.mark.parametrize("count", SIZES)
def test_scraping_one_feed_stores_its_items_in_one_statement(count, feed_server, django_assert_num_queries):
    url = feed_server.serve("/many.xml", rss([(f"g-{i}", f"Title {i}", f"Summary {i}") for i in range(count)]))
    feed = Feed.objects.create(url=url, title="Many")
    # Load the feed, then in one transaction (savepoint here): INSERT … unnest, UPDATE the feed.
    with django_assert_num_queries(5):
        outcome = scrape_feed(feed.pk)
    assert outcome.status == "ok" and len(outcome.new_article_ids) == count
    assert Article.objects.filter(feed=feed).count() == count


@pytest.mark.parametrize("count", SIZES)
def test_a_batch_of_unchanged_feeds_costs_the_same_for_any_number(count, feed_server, django_assert_num_queries):
    feeds = Feed.objects.bulk_create(
        Feed(url=feed_server.serve(f"/same-{i}.xml", rss([("g", "T", "S")]), etag=f'"v{i}"'), etag=f'"v{i}"')
        for i in range(count)
    )
    # Load the batch, one UPDATE of every feed's state; the poll log: one INSERT, one prune.
    with django_assert_num_queries(4):
        outcomes = scrape_feeds([f.pk for f in feeds])
        record_fetches(outcomes)
    assert sorted(o.feed_id for o in outcomes) == [f.pk for f in feeds]
    assert {o.status for o in outcomes} == {"not_modified"}
    assert Feed.objects.filter(pk__in=[f.pk for f in feeds], last_success_at__isnull=False).count() == count
    assert FeedFetch.objects.filter(feed__in=feeds, status="not_modified").count() == count


@pytest.mark.parametrize("count", SIZES)
def test_claiming_pending_articles_costs_the_same_for_any_number(count, django_assert_num_queries):
    ids = _pending_articles(count)
    # One transaction (savepoint here): SELECT … FOR UPDATE SKIP LOCKED, one UPDATE of the ids.
    with django_assert_num_queries(4):
        claimed = claim_pending_articles()
    assert sorted(claimed) == sorted(ids)


@pytest.mark.parametrize("count", SIZES)
def test_the_pending_sweep_actor_costs_the_same_for_any_number_of_articles(
    count, broker, django_assert_num_queries, django_capture_on_commit_callbacks
):
    _pending_articles(count)
    # The claim above; which claimed articles the queue still names is asked of Redis, not Postgres.
    with django_assert_num_queries(4), django_capture_on_commit_callbacks(execute=True):
        result = actors.process_pending_articles()
    assert result["batches"] >= 1


@pytest.mark.parametrize("count", SIZES)
def test_processing_one_batch_costs_the_same_for_any_batch_size(count, django_assert_num_queries):
    Topic.objects.create(name="sport", description="Sport: football, tennis, cricket, results")
    Topic.objects.create(name="business", description="Business: companies, markets, economy")
    ids = _pending_articles(count)
    topic_model_in_force()  # built once per topic set, then cached: this test counts the steady state
    # Claim (UPDATE … RETURNING), the topic fingerprint, then the write in one transaction (savepoint
    # here): set the timeouts, one UPDATE … FROM unnest.
    with django_assert_num_queries(6):
        outcome = process_articles(ids)
    assert outcome == {"processed": count, "failed": 0}
    assert Article.objects.filter(pk__in=ids, status=Article.Status.PROCESSED).count() == count
