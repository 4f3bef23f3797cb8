"""Fetching an article's page: which articles want one, and what each kind of page leaves on the article.

Real Postgres, real Redis (the politeness gate), a real local web site serving pages written for these
tests; the functions and the actor are called directly (tests/test_article_pipeline.py runs workers).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from articles.models import Article, Feed
from articles.services import claim_pending_articles
from pipeline import actors
from pipeline.feeds import article_pages
from pipeline.feeds.article_pages import fetch_article_page, queue_page_fetches
from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_client
from pipeline.taskqueue.politeness import HostBusy, HostPoliteness
from pipeline.understanding.processing import claim_articles
from tests.support import article_pages as pages
from tests.support.page_server import PageServer, page_server

pytestmark = pytest.mark.django_db

SNIPPET = "The council voted on the tram line."


@pytest.fixture
def site() -> Iterator[PageServer]:
    article_pages.ROBOTS.clear()
    with page_server() as server:
        yield server
    article_pages.ROBOTS.clear()


@pytest.fixture
def gate(broker) -> HostPoliteness:  # type: ignore[no-untyped-def]
    return HostPoliteness(redis_client(broker), max_concurrent=2, min_interval_ms=0, max_wait_seconds=5)


def make_article(feed: Feed, url: str, *, guid: str = "g", summary: str = SNIPPET, queued: bool = True) -> Article:
    return Article.objects.create(
        feed=feed,
        guid=guid,
        url=url,
        title="Council backs tram line",
        summary=summary,
        page_status=Article.PageStatus.QUEUED if queued else "",
        page_requested_at=timezone.now() if queued else None,
    )


@pytest.fixture
def site_feed(site: PageServer) -> Feed:
    return Feed.objects.create(url=site.url("/feed.xml"), title="Riverside")


def test_which_new_articles_want_their_page(site_feed: Feed) -> None:
    short = make_article(site_feed, "https://example.org/1", guid="1", queued=False)
    long_item = make_article(site_feed, "https://example.org/2", guid="2", summary="word " * 200, queued=False)
    no_link = make_article(site_feed, "", guid="3", queued=False)
    assert queue_page_fetches([short.pk, long_item.pk, no_link.pk]) == [short.pk]

    always = Feed.objects.create(url="https://example.org/always.xml", full_text=Feed.FullText.ALWAYS)
    never = Feed.objects.create(url="https://example.org/never.xml", full_text=Feed.FullText.NEVER)
    long_always = make_article(always, "https://example.org/4", guid="4", summary="word " * 200, queued=False)
    short_never = make_article(never, "https://example.org/5", guid="5", queued=False)
    assert queue_page_fetches([long_always.pk, short_never.pk]) == [long_always.pk]
    short.refresh_from_db()
    assert short.page_status == Article.PageStatus.QUEUED and short.page_requested_at is not None


def test_processing_waits_for_the_page_unless_the_fetch_was_lost(site_feed: Feed) -> None:
    waiting = make_article(site_feed, "https://example.org/1", guid="1")
    ready = make_article(site_feed, "https://example.org/2", guid="2", queued=False)
    assert claim_pending_articles([waiting.pk, ready.pk]) == [ready.pk]
    assert waiting.pk not in claim_pending_articles(None)
    Article.objects.filter(pk=waiting.pk).update(page_requested_at=timezone.now() - timedelta(hours=1))
    assert waiting.pk in claim_pending_articles(None)


def test_newspaper_page_is_stored_and_is_what_the_model_reads(site: PageServer, site_feed: Feed, gate) -> None:  # type: ignore[no-untyped-def]
    article = make_article(site_feed, site.serve("/news/tram", pages.NEWSPAPER))
    Article.objects.filter(pk=article.pk).update(status=Article.Status.PROCESSED)  # a re-fetch re-processes

    outcome = fetch_article_page(article.pk, gate=gate.slot)

    assert outcome.status == "fetched", outcome
    article.refresh_from_db()
    assert article.page_status == Article.PageStatus.FETCHED and article.page_error == ""
    assert "rebuild the old tram line" in article.body
    assert article.author == "Ada Fenwick"
    assert article.language == "en-GB"
    assert article.image_url == "https://images.example.org/tram.jpg"
    assert article.status == Article.Status.PENDING
    assert site.user_agents[-1] == "newsrec/1.0 (+article fetcher)"
    [claimed] = claim_articles([article.pk], "test-claim")
    assert claimed.text.startswith("Council backs tram line.") and "riverside market" in claimed.text
    # A re-delivered message finds the article no longer waiting and fetches nothing.
    assert fetch_article_page(article.pk, gate=gate.slot).status == "skipped"
    assert site.hits["/news/tram"] == 1


def test_feed_user_agent_overrides_the_setting(site: PageServer, site_feed: Feed, gate) -> None:  # type: ignore[no-untyped-def]
    Feed.objects.filter(pk=site_feed.pk).update(user_agent="Mozilla/5.0 (compatible; RiversideReader)")
    article = make_article(site_feed, site.serve("/news/blog", pages.BLOG))
    assert fetch_article_page(article.pk, gate=gate.slot).status == "fetched"
    assert set(site.user_agents) == {"Mozilla/5.0 (compatible; RiversideReader)"}  # robots.txt and page


def test_non_utf8_page(site: PageServer, site_feed: Feed, gate) -> None:  # type: ignore[no-untyped-def]
    article = make_article(site_feed, site.serve("/cafe", pages.LATIN, content_type="text/html"))
    assert fetch_article_page(article.pk, gate=gate.slot).status == "fetched"
    article.refresh_from_db()
    assert "Le café de la gare a rouvert" in article.body and article.language == "fr"


def test_robots_disallow_is_recorded_and_the_page_never_requested(site: PageServer, site_feed: Feed, gate) -> None:  # type: ignore[no-untyped-def]
    site.serve("/robots.txt", pages.ROBOTS_DISALLOW_PRIVATE, content_type="text/plain")
    blocked = make_article(site_feed, site.serve("/private/tram", pages.NEWSPAPER), guid="1")
    allowed = make_article(site_feed, site.serve("/public/tram", pages.NEWSPAPER), guid="2")

    assert fetch_article_page(blocked.pk, gate=gate.slot, final_attempt=False).status == "disallowed"
    assert fetch_article_page(allowed.pk, gate=gate.slot).status == "fetched"

    blocked.refresh_from_db()
    assert blocked.page_status == Article.PageStatus.DISALLOWED
    assert blocked.page_error == "robots.txt disallows this page" and blocked.body == ""
    assert "/private/tram" not in site.hits
    assert site.hits["/robots.txt"] == 1  # cached for the host


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (dict(body=pages.PAYWALL), "page text too short (43 characters, the feed's has 35)"),
        (dict(body=pages.NO_TEXT), "no extractable text on the page"),
        (dict(body=b"%PDF-1.7", content_type="application/pdf"), "not HTML (Content-Type: application/pdf)"),
        (dict(body=b""), "empty page"),
        (dict(body=b"<p>x</p>" * 200_000), "response larger than 1 MiB"),
        (dict(status=404), "HTTP 404 Not Found"),
        (dict(status=302, headers={"Location": "/loop"}), "redirect loop"),
    ],
)
def test_bad_pages_keep_the_feed_text_and_say_why(  # type: ignore[no-untyped-def]
    site: PageServer, site_feed: Feed, gate, settings, page: dict, reason: str
) -> None:
    settings.ARTICLE_MAX_BYTES = 1024 * 1024
    article = make_article(site_feed, site.serve("/loop", **page))

    outcome = fetch_article_page(article.pk, gate=gate.slot, final_attempt=False)

    assert outcome.status == "failed"
    article.refresh_from_db()
    assert article.page_status == Article.PageStatus.FAILED
    assert article.page_error.startswith(reason), article.page_error
    assert article.body == "" and article.summary == SNIPPET
    [claimed] = claim_articles([article.pk], "test-claim")
    assert claimed.text == f"Council backs tram line. {SNIPPET}"


def test_unavailable_page_is_retried_then_fails_for_good(site: PageServer, site_feed: Feed, gate) -> None:  # type: ignore[no-untyped-def]
    article = make_article(site_feed, site.serve("/busy", status=503, headers={"Retry-After": "120"}))

    outcome = fetch_article_page(article.pk, gate=gate.slot, final_attempt=False)
    assert (outcome.status, outcome.retry_after) == ("retry", 120)
    article.refresh_from_db()
    assert article.page_status == Article.PageStatus.QUEUED  # still waiting: nothing recorded

    outcome = fetch_article_page(article.pk, gate=gate.slot, final_attempt=True)
    assert outcome.status == "failed"
    article.refresh_from_db()
    assert article.page_error == "HTTP 503 Service Unavailable (retry after 120 s)"


def test_actor_chains_to_a_batched_processing_sweep(site: PageServer, site_feed: Feed, broker, settings) -> None:  # type: ignore[no-untyped-def]
    settings.HOST_MIN_INTERVAL_MS = 0
    first = make_article(site_feed, site.serve("/a", pages.NEWSPAPER), guid="a")
    second = make_article(site_feed, site.serve("/b", pages.PAYWALL), guid="b")

    one = actors.scrape_article(first.pk)
    two = actors.scrape_article(second.pk)

    assert (one["status"], two["status"]) == ("fetched", "failed")
    # Both ended within the delay: one sweep processes them together, and both results name it.
    assert one["follow_up_task_ids"] == two["follow_up_task_ids"] and len(one["follow_up_task_ids"]) == 1
    assert broker.client.hlen(redis_keys.delayed_messages(actors.PROCESSING)) == 1


def test_actor_puts_a_retry_off_and_pauses_the_host(site: PageServer, site_feed: Feed, broker) -> None:  # type: ignore[no-untyped-def]
    article = make_article(site_feed, site.serve("/busy", status=429, headers={"Retry-After": "300"}))

    result = actors.scrape_article(article.pk)

    assert result["status"] == "retry" and len(result["follow_up_task_ids"]) == 1
    # The whole host waits: the next article of that site is put off without a request.
    other = make_article(site_feed, site.serve("/other", pages.NEWSPAPER), guid="other")
    deferred = actors.scrape_article(other.pk)
    assert deferred["status"] == "deferred" and "/other" not in site.hits


def test_politeness_limits_concurrency_interval_and_pauses(broker) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex  # host keys outlive the test: names of its own
    news, spaced_host, other = f"news-{run}.example.org:443", f"spaced-{run}.example.org:443", f"o-{run}.example:443"
    polite = HostPoliteness(redis_client(broker), max_concurrent=2, min_interval_ms=0, max_wait_seconds=0)
    with polite.slot(news), polite.slot(news):
        assert polite.in_flight(news) == 2
        with pytest.raises(HostBusy), polite.slot(news):
            pass
        with polite.slot(other):  # another host has its own slots
            pass
    assert polite.in_flight(news) == 0

    spaced = HostPoliteness(redis_client(broker), max_concurrent=5, min_interval_ms=60_000, max_wait_seconds=0)
    with spaced.slot(spaced_host):
        pass
    with pytest.raises(HostBusy) as busy, spaced.slot(spaced_host):
        pass
    assert 50 < busy.value.retry_in <= 60

    assert polite.pause(news, 30) == 30
    with pytest.raises(HostBusy) as busy, polite.slot(news):
        pass
    assert 25 < busy.value.retry_in <= 30
