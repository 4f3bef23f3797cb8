"""Hostile feeds: each class of pathological input ends as a recorded feed failure that backs off,
within the parse budget, and a worker that met one goes on to scrape ordinary feeds.

Three tiers: the structure checks as plain functions, scrape_feed over real HTTP into the real database,
and real worker processes on the real broker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from articles.models import Article, Feed
from pipeline import actors
from pipeline.feeds import budget
from pipeline.feeds.markup_limits import MarkupLimits, RefusedMarkup, check_markup
from pipeline.feeds.parsing import ParseError, parse_feed
from pipeline.feeds.scraping import scrape_feed
from tests.conftest import rss
from tests.support import hostile_feeds
from tests.support.faults import wait_until

ROOT = Path(__file__).resolve().parent.parent
LIMITS = MarkupLimits(max_depth=50, max_attributes=20, max_field_chars=10_000)


@pytest.fixture(autouse=True)
def fresh_budget_pool() -> Iterator[None]:
    # Settings a test changes (memory cap, pool size) take effect in a pool of its own.
    budget.shutdown_pool()
    budget._POOL = None
    yield
    budget.shutdown_pool()
    budget._POOL = None


# --- the structure checks -------------------------------------------------------------------------


@pytest.mark.parametrize("markup", [b"<div>" * 51, "<div>" * 51, "<b><i>" * 26])
def test_nesting_beyond_the_limit_is_refused(markup):
    with pytest.raises(RefusedMarkup, match="nests elements more than 50 deep"):
        check_markup(markup, LIMITS, "the summary")


def test_stray_closing_tags_do_not_hide_depth():
    with pytest.raises(RefusedMarkup):
        check_markup("<div>" * 51 + "</span>" * 51, LIMITS, "x")


def test_closed_void_and_self_closing_elements_do_not_add_depth():
    check_markup("<p>a<br>b<img src=x><hr/></p>" * 10_000, LIMITS, "x")
    check_markup("<ul>" + "<li>item</li>" * 10_000 + "</ul>", LIMITS, "x")
    # Unclosed <p> inside an item end when the item ends (closing back to the nearest open element).
    check_markup(("<item><description>" + "<p>x" * 40 + "</description></item>") * 100, LIMITS, "x")


@pytest.mark.parametrize("tag", ["<p " + " ".join(f"a{i}=1" for i in range(21)) + ">", '<p a="1"' + 'b="1"' * 21 + ">"])
def test_attribute_floods_are_refused(tag):
    with pytest.raises(RefusedMarkup, match="more than 20 attributes"):
        check_markup(tag, LIMITS, "x")


def test_ordinary_attributes_and_urls_pass():
    check_markup('<a href="https://example.org/?a=1&b=2" title="t" class="c">x</a>' * 100, LIMITS, "x")


def test_a_tag_that_never_closes_is_not_a_tag():
    check_markup("<" + "a" * 1_000_000, LIMITS, "x")
    check_markup("<a " + "b " * 100_000, LIMITS, "x")


# --- parse_feed: refusals name the place -----------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (hostile_feeds.deep_nesting_raw, "refused: the document nests elements more than 256 deep"),
        (hostile_feeds.deep_nesting_escaped, "refused: entry 1's summary nests elements more than 256 deep"),
        (hostile_feeds.attribute_flood, "refused: an element in the document carries more than 256 attributes"),
    ],
)
def test_parse_refuses_pathological_markup_before_parsing_it(document, reason):
    with pytest.raises(ParseError) as raised:
        parse_feed(document(), base_url="https://example.org/")
    assert str(raised.value) == reason


def test_html_fields_are_cut_to_the_field_cap_before_sanitising():
    parsed = parse_feed(rss([("long", "Long", "word " * 10_000)]), base_url="https://example.org/", limits=LIMITS)
    assert len(parsed.entries[0].summary) <= 10_000


# --- scrape_feed: a refusal is a feed failure like any other -----------------------------------------


def _hostile_feed(feed_server, name: str, body: bytes) -> Feed:
    return Feed.objects.create(url=feed_server.serve(f"/{name}.xml", body))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (hostile_feeds.deep_nesting_raw, "refused: the document nests elements"),
        (hostile_feeds.deep_nesting_escaped, "refused: entry 1's summary nests elements"),
        (hostile_feeds.attribute_flood, "refused: an element in the document carries"),
    ],
)
def test_a_hostile_feed_records_the_reason_and_backs_off(feed_server, document, reason):
    feed = _hostile_feed(feed_server, "hostile", document())
    before = timezone.now()
    outcome = scrape_feed(feed.pk)
    assert outcome.status == "error" and outcome.error.startswith(reason)
    feed.refresh_from_db()
    assert feed.error_count == 1 and feed.last_error.startswith(reason)
    assert feed.next_fetch_at >= before + timedelta(seconds=feed.fetch_interval)
    assert not Article.objects.filter(feed=feed).exists()


@pytest.mark.django_db
def test_markup_the_checks_let_through_is_stopped_by_the_cpu_budget(feed_server, settings):
    # With the structure checks out of the way, the budget is what stops nh3 (here: 300,000 deep).
    settings.FEED_MAX_NESTING_DEPTH = 10_000_000
    settings.FEED_PARSE_CPU_SECONDS = 1
    feed = _hostile_feed(feed_server, "deep", hostile_feeds.deep_nesting_escaped())
    outcome = scrape_feed(feed.pk)
    assert outcome.error == "refused: parsing stopped after 1 s of CPU time (its budget)"
    feed.refresh_from_db()
    assert feed.error_count == 1 and feed.next_fetch_at > timezone.now()


@pytest.mark.django_db
def test_memory_beyond_the_parse_cap_is_a_recorded_failure(feed_server, settings):
    settings.FEED_PARSE_MEMORY_MB = 120
    feed = _hostile_feed(feed_server, "entities", hostile_feeds.entity_flood())
    outcome = scrape_feed(feed.pk)
    assert outcome.error == "refused: parsing needed more than 120 MB of memory"
    feed.refresh_from_db()
    assert feed.error_count == 1


@pytest.mark.django_db
def test_many_entity_references_are_handled_within_the_default_budget(feed_server):
    # A million references (4.5 MB): about 1 s of the 5 s CPU budget (benchmarks/bench_hostile.py).
    feed = _hostile_feed(feed_server, "entities", hostile_feeds.entity_flood(1_000_000))
    outcome = scrape_feed(feed.pk)
    assert outcome.status == "ok", outcome.error
    # "&amp;amp;" in the XML is the HTML "&amp;", which the sanitiser keeps as one escaped "&".
    summary = Article.objects.get(feed=feed).summary
    assert summary.startswith("&amp;&amp;&amp;") and len(summary) < 2 * settings.FEED_MAX_FIELD_CHARS


@pytest.mark.django_db
def test_a_feed_that_stays_hostile_is_disabled_after_the_usual_number_of_failures(feed_server, settings):
    settings.FEED_DISABLE_AFTER_FAILURES = 3
    feed = _hostile_feed(feed_server, "flood", hostile_feeds.attribute_flood())
    for _ in range(3):
        scrape_feed(feed.pk)
    feed.refresh_from_db()
    assert feed.error_count == 3 and not feed.is_active
    assert feed.disabled_reason.startswith("3 consecutive failures, last: refused: an element in the document")
    assert scrape_feed(feed.pk).status == "skipped"


# --- through a real worker ---------------------------------------------------------------------------


def _worker_env(**overrides: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # The worker must use the test database pytest-django created, not the development one.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "HF_HUB_OFFLINE": "1",
        "dramatiq_queue_prefetch": "1",
        **overrides,
    }


@pytest.fixture
def one_scraping_thread(broker, tmp_path) -> Iterator[Path]:
    """One scraping worker with one thread: whatever is sent after a hostile feed waits behind it.

    Its structure checks allow any depth, so deep nesting reaches the parser and only the CPU budget
    (2 s) stops it; attribute floods are still refused by the checks."""
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "-Q", actors.SCRAPING, "-p", "1", "-t", "1"],
            cwd=ROOT,
            env=_worker_env(FEED_MAX_NESTING_DEPTH="10000000", FEED_PARSE_CPU_SECONDS="2"),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_an_ordinary_feed_queued_behind_hostile_ones_still_completes(feed_server, one_scraping_thread):
    deep = _hostile_feed(feed_server, "deep", hostile_feeds.deep_nesting_escaped())
    flood = _hostile_feed(feed_server, "flood", hostile_feeds.attribute_flood())
    calm = Feed.objects.create(url=feed_server.serve("/calm.xml", hostile_feeds.ordinary()))
    for feed in (deep, flood, calm):
        actors.scrape_feed.send(feed.pk, chain=False)

    # A hang detector, not a benchmark: unguarded, the deep feed alone holds the thread for minutes.
    wait_until(
        lambda: Article.objects.filter(feed=calm).count() == 2,
        timeout=240,
        what=f"the ordinary feed to be scraped (worker log: {one_scraping_thread})",
    )
    states = {f.pk: f for f in Feed.objects.filter(pk__in=[deep.pk, flood.pk, calm.pk])}
    assert states[deep.pk].last_error == "refused: parsing stopped after 2 s of CPU time (its budget)"
    assert states[flood.pk].last_error.startswith("refused: an element in the document carries more than")
    for hostile in (deep.pk, flood.pk):
        assert states[hostile].error_count == 1 and states[hostile].next_fetch_at > timezone.now()
    assert states[calm.pk].error_count == 0 and states[calm.pk].last_success_at is not None
