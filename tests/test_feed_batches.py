"""The due-feed sweep's unit of work: a batch of feeds polled at once over real HTTP from a local server,
each outcome recorded on its own feed, the unchanged ones written together."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from articles.models import Article, Feed, FeedFetch
from pipeline import actors
from pipeline.feeds import scraping
from pipeline.feeds.fetch_log import KEEP_PER_FEED, record_fetches
from pipeline.feeds.scraping import ScrapeOutcome, scrape_feeds
from pipeline.feeds.storing import save_poll_states
from tests.conftest import rss

pytestmark = pytest.mark.django_db


def _mixed_batch(feed_server) -> dict[str, Feed]:  # type: ignore[no-untyped-def]
    items = rss([("c-1", "Rates held", "The bank held rates."), ("c-2", "Derby drawn", "Two goals each.")])
    feeds = {
        "changed": Feed(url=feed_server.serve("/changed.xml", items), full_text=Feed.FullText.NEVER),
        "unchanged": Feed(url=feed_server.serve("/same.xml", items, etag='"v1"'), etag='"v1"'),
        "missing": Feed(url=feed_server.url("/nowhere.xml")),
        "gone": Feed(url=feed_server.serve("/gone.xml", b"", status=410)),
        "disabled": Feed(url=feed_server.serve("/off.xml", items), is_active=False, disabled_reason="by hand"),
    }
    Feed.objects.bulk_create(feeds.values())
    return feeds


def test_each_feed_of_a_batch_gets_its_own_outcome(feed_server):
    feeds = _mixed_batch(feed_server)
    deleted_id = max(f.pk for f in feeds.values()) + 1000
    outcomes = {o.feed_id: o for o in scrape_feeds([f.pk for f in feeds.values()] + [deleted_id])}

    assert {name: outcomes[f.pk].status for name, f in feeds.items()} == {
        "changed": "ok",
        "unchanged": "not_modified",
        "missing": "error",
        "gone": "error",
        "disabled": "skipped",
    }
    assert outcomes[deleted_id].status == "skipped" and "no longer exists" in outcomes[deleted_id].error
    assert "404" in outcomes[feeds["missing"].pk].error
    assert feed_server.hits.get("/off.xml") is None  # a disabled feed is not fetched

    changed = outcomes[feeds["changed"].pk]
    assert len(changed.new_article_ids) == 2 and changed.bytes > 0
    assert set(Article.objects.filter(feed=feeds["changed"]).values_list("title", flat=True)) == {
        "Rates held",
        "Derby drawn",
    }
    state = {f.pk: f for f in Feed.objects.filter(pk__in=[f.pk for f in feeds.values()])}
    soon = timezone.now() + timedelta(seconds=60)
    for name in ("changed", "unchanged"):
        assert state[feeds[name].pk].error_count == 0 and state[feeds[name].pk].last_success_at is not None
        assert state[feeds[name].pk].next_fetch_at > soon
    missing = state[feeds["missing"].pk]
    assert missing.error_count == 1 and "404" in missing.last_error and missing.is_active
    gone = state[feeds["gone"].pk]
    assert not gone.is_active and gone.disabled_reason.startswith("gone")
    assert state[feeds["disabled"].pk].last_fetched_at is None


def test_the_poll_log_records_every_polled_feed_of_a_batch_and_keeps_each_feeds_newest(feed_server):
    feeds = _mixed_batch(feed_server)
    earlier = timezone.now() - timedelta(hours=1)
    FeedFetch.objects.bulk_create(
        FeedFetch(feed=feeds["unchanged"], started_at=earlier + timedelta(seconds=i), status="not_modified")
        for i in range(KEEP_PER_FEED + 5)
    )
    outcomes = scrape_feeds([f.pk for f in feeds.values()])
    record_fetches(outcomes)

    logged = {name: list(FeedFetch.objects.filter(feed=f)) for name, f in feeds.items()}
    assert [len(logged[name]) for name in ("changed", "missing", "gone", "disabled")] == [1, 1, 1, 0]
    assert logged["changed"][0].new_articles == 2 and logged["changed"][0].entries == 2
    assert "404" in logged["missing"][0].error
    # The unchanged feed keeps its newest KEEP_PER_FEED polls: this one and the latest older ones.
    assert len(logged["unchanged"]) == KEEP_PER_FEED
    assert logged["unchanged"][0].started_at > earlier + timedelta(minutes=5)
    assert min(f.started_at for f in logged["unchanged"]) == earlier + timedelta(seconds=6)


def test_a_batch_polls_the_same_feed_once(feed_server):
    feeds = _mixed_batch(feed_server)
    outcomes = scrape_feeds([feeds["changed"].pk, feeds["changed"].pk])
    assert [o.status for o in outcomes] == ["ok"] and feed_server.hits["/changed.xml"] == 1


def test_the_batch_actor_chains_all_new_articles_to_processing_together(
    feed_server, broker, django_capture_on_commit_callbacks
):
    first = Feed.objects.create(
        url=feed_server.serve("/one.xml", rss([("o-1", "Budget vote passes", "Parliament approved it.")])),
        full_text=Feed.FullText.NEVER,
    )
    second = Feed.objects.create(
        url=feed_server.serve("/two.xml", rss([("t-1", "Striker signs", "The club signed him.")])),
        full_text=Feed.FullText.NEVER,
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_feeds([first.pk, second.pk])
    assert sorted(o["status"] for o in result["outcomes"]) == ["ok", "ok"]
    assert all("started_at" not in o for o in result["outcomes"])  # the result is JSON
    # Both feeds' articles in one processing batch, whose task id the result names.
    assert len(result["follow_up_task_ids"]) == 1
    queued = broker.client.hvals(f"{broker.namespace}:processing.msgs")
    assert len(queued) == 1 and result["follow_up_task_ids"][0] in queued[0].decode()
    assert FeedFetch.objects.filter(feed__in=[first, second], status="ok").count() == 2


def test_the_sweep_sends_due_feeds_in_batches(feed_server, broker, settings, django_capture_on_commit_callbacks):
    settings.FEED_POLL_BATCH_SIZE = 2
    due = timezone.now() - timedelta(minutes=1)
    feeds = Feed.objects.bulk_create(Feed(url=feed_server.url(f"/f{i}.xml"), next_fetch_at=due) for i in range(5))
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_due_feeds()
    assert result["feeds"] == [f.pk for f in feeds] and len(result["follow_up_task_ids"]) == 3
    queued = [m.decode() for m in broker.client.hvals(f"{broker.namespace}:scraping.msgs")]
    assert len(queued) == 3 and all("scrape_feeds" in m for m in queued)


@pytest.fixture
def one_poll_thread(settings) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """The process's poll threads cut to one, so a slow feed holds every later poll back."""
    settings.FEED_POLL_CONCURRENCY = 1
    scraping._poll_threads.cache_clear()
    yield
    scraping._poll_threads().shutdown(wait=True)
    scraping._poll_threads.cache_clear()


def _slow_then_two(feed_server) -> tuple[Feed, list[Feed]]:  # type: ignore[no-untyped-def]
    items = rss([("s-1", "Rates held", "The bank held rates.")])
    slow = Feed(url=feed_server.serve("/slow.xml", items, etag='"s"', delay=1.0), etag='"s"')
    later = [Feed(url=feed_server.serve(f"/later{i}.xml", items, etag='"l"'), etag='"l"') for i in range(2)]
    Feed.objects.bulk_create([slow, *later])
    return slow, later


def test_a_batch_out_of_time_polls_none_of_the_feeds_it_had_not_started(feed_server, one_poll_thread):
    slow, later = _slow_then_two(feed_server)
    outcomes = scrape_feeds([slow.pk] + [f.pk for f in later], start_by=time.monotonic() + 0.3)
    record_fetches(outcomes)

    by_feed = {o.feed_id: o for o in outcomes}
    # The poll already running when the time ran out is finished and recorded.
    assert by_feed[slow.pk].status == "not_modified" and feed_server.hits["/slow.xml"] == 1
    assert Feed.objects.get(pk=slow.pk).last_fetched_at is not None
    # The two waiting for the thread are neither fetched nor touched nor logged: another batch polls them.
    assert [by_feed[f.pk].status for f in later] == ["deferred", "deferred"]
    assert not any(path.startswith("/later") for path in feed_server.hits)
    assert list(Feed.objects.filter(pk__in=[f.pk for f in later]).values_list("last_fetched_at", flat=True)) == [
        None,
        None,
    ]
    assert FeedFetch.objects.filter(feed__in=later).count() == 0


def test_the_batch_actor_sends_the_feeds_it_had_no_time_for_on_in_a_new_batch(
    feed_server, broker, one_poll_thread, monkeypatch, django_capture_on_commit_callbacks
):
    slow, later = _slow_then_two(feed_server)
    monkeypatch.setattr(actors, "_poll_start_window", lambda: 0.3)
    with django_capture_on_commit_callbacks(execute=True):
        result = actors.scrape_feeds([slow.pk] + [f.pk for f in later])

    [continuation] = result["follow_up_task_ids"]
    [queued] = [json.loads(m) for m in broker.client.hvals(f"{broker.namespace}:scraping.msgs")]
    assert queued["message_id"] == continuation and queued["actor_name"] == "scrape_feeds"
    assert queued["args"] == [[f.pk for f in later], True]
    # The new batch, run with time to spare, polls them.
    monkeypatch.undo()
    assert {o["status"] for o in actors.scrape_feeds(*queued["args"])["outcomes"]} == {"not_modified"}


def test_a_batch_stops_starting_polls_in_time_to_finish_the_last_inside_its_time_limit(settings):
    limit = actors.scrape_feeds.options["time_limit"] / 1000
    last_poll = settings.FEED_TOTAL_TIMEOUT_SECONDS + settings.FEED_PARSE_WALL_SECONDS
    assert actors._poll_start_window() + last_poll < limit
    settings.FEED_TOTAL_TIMEOUT_SECONDS = 10 * 60  # longer than the limit: still half of it to start polls
    assert actors._poll_start_window() == limit / 2


def test_poll_states_are_written_together_and_leave_an_operators_fields_alone(db):
    feeds = Feed.objects.bulk_create(Feed(url=f"https://example.invalid/{i}.xml") for i in range(3))
    now = timezone.now()
    feeds[0].record_success(now=now, etag='"e1"', last_modified="Wed, 02 Dec 2026 10:00:00 GMT", new_url=None)
    feeds[1].record_failure("HTTP 503", now=now, retry_after=600)
    feeds[2].record_failure("HTTP 410 Gone", now=now, permanent=True)
    # Meanwhile an operator edits a feed in the admin: the poll's write must not undo it.
    Feed.objects.filter(pk=feeds[1].pk).update(fetch_interval=3600, full_text=Feed.FullText.ALWAYS)

    save_poll_states(feeds)

    saved = {f.pk: f for f in Feed.objects.filter(pk__in=[f.pk for f in feeds])}
    first, second, third = (saved[f.pk] for f in feeds)
    assert (first.etag, first.last_modified, first.last_success_at) == ('"e1"', "Wed, 02 Dec 2026 10:00:00 GMT", now)
    assert first.last_error_at is None and first.error_count == 0
    assert (second.error_count, second.last_error, second.last_error_at) == (1, "HTTP 503", now)
    assert second.next_fetch_at == feeds[1].next_fetch_at and second.last_success_at is None
    assert second.fetch_interval == 3600 and second.full_text == Feed.FullText.ALWAYS
    assert not third.is_active and third.disabled_reason.startswith("gone")


def test_a_batch_write_keeps_every_value_as_given_and_cuts_one_too_long_for_its_column(db):
    """The batch writes send their rows as JSON (pipeline/feeds/json_rows.py): quotes, backslashes,
    newlines and non-ASCII text arrive as they were, timestamps to the microsecond, and a value longer
    than its column is cut to fit, as a cast to the column's type does, instead of failing the batch."""
    feeds = Feed.objects.bulk_create(Feed(url=f"https://example.invalid/j{i}.xml") for i in range(2))
    now = timezone.now().replace(microsecond=123456)
    awkward = 'HTTP 500 "Oops" \\ back\nslash, naïve café — 新闻'
    feeds[0].record_failure(awkward, now=now)
    feeds[1].record_success(now=now, etag='"' + "e" * 600 + '"', last_modified=None, new_url=None)

    save_poll_states(feeds)
    record_fetches(
        [
            ScrapeOutcome(feeds[0].pk, "error", error=awkward, started_at=now, duration_ms=7),
            ScrapeOutcome(feeds[1].pk, "not_modified", started_at=now, duration_ms=3),
        ]
    )

    failed, fine = (Feed.objects.get(pk=f.pk) for f in feeds)
    assert (failed.last_error, failed.last_error_at, failed.error_count) == (awkward, now, 1)
    assert fine.etag == '"' + "e" * 499 and fine.last_success_at == now  # etag is a varchar(500)
    logged = {f.feed_id: f for f in FeedFetch.objects.filter(feed__in=feeds)}
    assert (logged[feeds[0].pk].error, logged[feeds[0].pk].started_at, logged[feeds[0].pk].duration_ms) == (
        awkward,
        now,
        7,
    )
    assert (logged[feeds[1].pk].status, logged[feeds[1].pk].started_at) == ("not_modified", now)
