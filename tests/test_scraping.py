"""Scraping a feed over real HTTP from a local server into the real database, and the actors around it."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

import pytest
from django.utils import timezone

from articles.models import Article, Feed
from articles.services import claim_due_feeds, claim_pending_articles
from pipeline import actors
from pipeline.feeds.parsing import ParsedEntry, parse_feed
from pipeline.feeds.scraping import ScrapeOutcome, scrape_feed
from pipeline.feeds.storing import upsert_entries
from tests.conftest import rss

pytestmark = pytest.mark.django_db


def test_scrape_stores_articles_and_schedules_next_poll(feed):
    outcome = scrape_feed(feed.pk)
    assert outcome.status == "ok" and len(outcome.new_article_ids) == 2
    titles = set(Article.objects.filter(feed=feed).values_list("title", flat=True))
    assert titles == {"Budget vote passes", "Striker signs"}
    feed.refresh_from_db()
    assert feed.error_count == 0 and feed.last_success_at is not None
    assert feed.next_fetch_at > timezone.now() + timedelta(seconds=feed.fetch_interval - 60)


def test_a_feed_served_twice_yields_no_duplicates(feed):
    scrape_feed(feed.pk)
    again = scrape_feed(feed.pk)
    assert again.status == "ok" and again.new_article_ids == []
    assert Article.objects.filter(feed=feed).count() == 2


def test_only_new_items_are_new_on_the_next_poll(feed, feed_server):
    scrape_feed(feed.pk)
    feed_server.serve("/news.xml", rss([("a-1", "Budget vote passes", "x"), ("a-3", "Rates held", "y")]))
    outcome = scrape_feed(feed.pk)
    assert [Article.objects.get(pk=i).title for i in outcome.new_article_ids] == ["Rates held"]


def test_not_modified_costs_no_parsing(db, feed_server):
    url = feed_server.serve("/etag.xml", rss([("e-1", "One", "s")]), etag='"v1"')
    feed = Feed.objects.create(url=url)
    assert scrape_feed(feed.pk).status == "ok"
    feed.refresh_from_db()
    assert feed.etag == '"v1"'
    assert scrape_feed(feed.pk).status == "not_modified"
    assert feed_server.hits["/etag.xml"] == 2


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ({"status": 500, "body": b"oops"}, "500"),
        ({"body": b"<html><body>Not a feed</body></html>", "content_type": "text/html"}, ""),
        ({"body": b""}, ""),
    ],
)
def test_broken_feeds_record_an_error_and_back_off(db, feed_server, route, expected):
    url = feed_server.serve("/broken.xml", **route)
    feed = Feed.objects.create(url=url, fetch_interval=600)
    outcome = scrape_feed(feed.pk)
    feed.refresh_from_db()
    assert outcome.status == "error"
    assert feed.error_count == 1 and feed.last_error and expected in feed.last_error
    assert feed.next_fetch_at >= timezone.now() + timedelta(seconds=590)
    assert not Article.objects.exists()


def test_unreachable_feed_records_the_error(db):
    feed = Feed.objects.create(url="http://127.0.0.1:9/feed.xml")  # discard port: connection refused
    outcome = scrape_feed(feed.pk)
    feed.refresh_from_db()
    assert outcome.status == "error" and feed.error_count == 1 and feed.last_error


def test_deleted_or_disabled_feeds_are_skipped_quietly(db):
    assert scrape_feed(123456).status == "skipped"
    feed = Feed.objects.create(url="https://example.invalid/x", is_active=False, disabled_reason="gone")
    assert scrape_feed(feed.pk).status == "skipped"


def test_upsert_is_idempotent_per_feed_guid(feed):
    entries = parse_feed(rss([("g", "T", "S")]), base_url=feed.url).entries
    assert len(upsert_entries(feed, entries)) == 1
    assert upsert_entries(feed, entries) == []


def test_upserted_entries_keep_every_value_as_given(feed):
    """Entries go to Postgres as JSON rows (pipeline/feeds/json_rows.py): quotes, backslashes, newlines
    and non-ASCII text arrive as they were, dates to the microsecond, a missing date as NULL."""
    awkward = 'Rates "held" \\ again\nnaïve café — 新闻'
    published = timezone.now().replace(microsecond=654321)
    dated = ParsedEntry("g-1", "https://example.org/a?x=1&y=2", awkward, awkward, f"<p>{awkward}</p>", "Zoë", published)
    undated = ParsedEntry("g-2", "", "", "", "", "", None)

    ids = upsert_entries(feed, [dated, undated])

    first, second = (Article.objects.get(pk=pk) for pk in ids)
    assert (first.guid, first.url, first.title, first.summary, first.content, first.author, first.published_at) == (
        "g-1",
        "https://example.org/a?x=1&y=2",
        awkward,
        awkward,
        f"<p>{awkward}</p>",
        "Zoë",
        published,
    )
    assert (second.guid, second.title, second.published_at) == ("g-2", "", None)


def test_claimed_due_feeds_are_not_claimed_again(db):
    due = Feed.objects.create(url="https://example.invalid/due")
    Feed.objects.create(url="https://example.invalid/later", next_fetch_at=timezone.now() + timedelta(hours=1))
    Feed.objects.create(url="https://example.invalid/off", is_active=False)
    assert claim_due_feeds() == [due.pk]
    assert claim_due_feeds() == []


def test_pending_articles_are_claimed_once_until_the_claim_goes_stale(feed):
    scrape_feed(feed.pk)
    first = claim_pending_articles()
    assert len(first) == 2
    assert claim_pending_articles() == []
    assert sorted(claim_pending_articles(now=timezone.now() + timedelta(hours=1))) == sorted(first)


def test_scrape_actor_chains_processing_and_names_the_follow_up_tasks(feed, broker, django_capture_on_commit_callbacks):
    Feed.objects.filter(pk=feed.pk).update(full_text=Feed.FullText.NEVER)  # the feed's text is enough
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_feed(feed.pk)
    assert result["status"] == "ok" and len(result["new_article_ids"]) == 2
    assert len(result["follow_up_task_ids"]) == 1
    queued = broker.client.hvals(f"{broker.namespace}:processing.msgs")
    assert len(queued) == 1 and result["follow_up_task_ids"][0] in queued[0].decode()


def test_scrape_actor_queues_page_fetches_for_snippets_and_names_them(feed, broker, django_capture_on_commit_callbacks):
    # The fixture's items carry one sentence each: in "auto" mode their pages are fetched first.
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_feed(feed.pk)
    assert len(result["new_article_ids"]) == 2 and len(result["follow_up_task_ids"]) == 2
    assert broker.client.hlen(f"{broker.namespace}:processing.msgs") == 0  # processing waits for the pages
    queued = [m.decode() for m in broker.client.hvals(f"{broker.namespace}:scraping.msgs")]
    for task_id in result["follow_up_task_ids"]:
        assert any(task_id in m and "scrape_article" in m for m in queued)
    pages = Article.objects.filter(pk__in=result["new_article_ids"]).values_list("page_status", flat=True)
    assert set(pages) == {Article.PageStatus.QUEUED}


def test_sweep_actor_queues_the_due_feeds(feed, broker, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_due_feeds()
    assert result["feeds"] == [feed.pk] and len(result["follow_up_task_ids"]) == 1
    assert broker.client.llen(f"{broker.namespace}:scraping") == 1


def test_an_outcome_in_a_task_result_has_every_field_but_the_poll_log_timestamp():
    """as_dict is spelled out (dataclasses.asdict was slow): a field added later must not go missing."""
    outcome = ScrapeOutcome(7, "ok", entries=2, new_article_ids=[1, 2], error="", bytes=10, duration_ms=3,
                            started_at=timezone.now())  # fmt: skip
    result = outcome.as_dict()
    assert set(result) == {f.name for f in fields(ScrapeOutcome)} - {"started_at"}
    assert result["new_article_ids"] == [1, 2] and result["new_article_ids"] is not outcome.new_article_ids
