"""Whole articles end to end: real worker processes on the real broker and database, a local web site
serving a feed and the pages its items link to (several layouts, a non-UTF-8 page, a paywall stub, a
page robots.txt disallows, bad input), and a burst of fetches against one host under politeness."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from articles.models import Article, Feed
from pipeline import actors
from pipeline.taskqueue.models import TaskRecord
from tests.conftest import rss
from tests.support import article_pages as pages
from tests.support.page_server import PageServer, page_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def start_workers(queues: list[tuple[str, int, int]], **env: str) -> list[subprocess.Popen]:
    db = connection.settings_dict
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "HF_HUB_OFFLINE": "1",
        "dramatiq_queue_prefetch": "1",
        **env,
    }
    return [
        subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "-Q", queue, "-p", str(processes), "-t", str(threads)],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=open(os.environ["WORKER_LOG"], "ab") if os.environ.get("WORKER_LOG") else subprocess.DEVNULL,
            start_new_session=True,
        )
        for queue, processes, threads in queues
    ]


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def finished_record(task_id: str) -> TaskRecord | None:
    record = TaskRecord.objects.filter(message_id=task_id).first()
    return record if record and record.status in ("succeeded", "failed", "dead-lettered") else None


@pytest.fixture
def site() -> Iterator[PageServer]:
    with page_server() as server:
        yield server


# A loaded machine (the suite shares 2 cores) can take minutes to start the processing worker.
@pytest.mark.timeout(900)
def test_feed_scrape_fetches_pages_and_processes_every_article(site: PageServer, broker) -> None:  # type: ignore[no-untyped-def]
    site.serve("/robots.txt", pages.ROBOTS_DISALLOW_PRIVATE, content_type="text/plain")
    expected = {
        "newspaper": ("/news/tram", dict(body=pages.NEWSPAPER), "fetched", "rebuild the old tram line"),
        "blog": ("/blog/winner", dict(body=pages.BLOG), "fetched", "curled a free kick"),
        "latin": ("/cafe", dict(body=pages.LATIN, content_type="text/html"), "fetched", "Le café de la gare"),
        "paywall": ("/premium", dict(body=pages.PAYWALL), "failed", "page text too short"),
        "robots": ("/private/memo", dict(body=pages.NEWSPAPER), "disallowed", "robots.txt disallows"),
        "pdf": ("/report.pdf", dict(body=b"%PDF-1.7", content_type="application/pdf"), "failed", "not HTML"),
        "loop": ("/loop", dict(status=302, headers={"Location": "/loop"}), "failed", "redirect loop"),
        "gone": ("/gone", dict(status=404), "failed", "HTTP 404"),
    }
    for path, page, _, _ in expected.values():
        site.serve(path, **page)
    items = [(name, f"Story {name}", f"One line about {name}.") for name in expected]
    feed_xml = rss(items).replace(b"https://example.invalid/", site.url("/").encode())
    for name, (path, *_) in expected.items():
        feed_xml = feed_xml.replace(site.url(f"/{name}").encode() + b"<", site.url(path).encode() + b"<")
    feed = Feed.objects.create(url=site.serve("/feed.xml", feed_xml, content_type="application/rss+xml"))

    workers = start_workers(
        [("scraping", 1, 4), ("processing", 1, 1)], HOST_MIN_INTERVAL_MS="200", ARTICLE_PROCESS_DELAY_SECONDS="2"
    )
    try:
        scrape_id = actors.scrape_feed.send(feed.pk).message_id
        scrape = wait_for(lambda: finished_record(scrape_id), 120, "feed scrape")
        assert scrape.status == "succeeded" and len(scrape.result["follow_up_task_ids"]) == len(expected)
        # Follow the chain: every page fetch names the processing sweep that takes its article.
        sweeps = set()
        for task_id in scrape.result["follow_up_task_ids"]:
            fetch = wait_for(lambda task_id=task_id: finished_record(task_id), 120, "page fetch")
            assert fetch.status == "succeeded" and len(fetch.result["follow_up_task_ids"]) == 1, fetch.result
            sweeps.update(fetch.result["follow_up_task_ids"])
        for task_id in sweeps:
            sweep = wait_for(lambda task_id=task_id: finished_record(task_id), 300, "processing sweep")
            for batch_id in sweep.result["follow_up_task_ids"]:
                wait_for(lambda batch_id=batch_id: finished_record(batch_id), 300, "processing batch")
        wait_for(
            lambda: not Article.objects.filter(feed=feed, status=Article.Status.PENDING).exists(),
            300,
            "every article processed",
        )
    finally:
        stop(workers)

    articles = {a.guid: a for a in Article.objects.filter(feed=feed)}
    assert set(articles) == set(expected)
    for name, (_, _, page_status, text) in expected.items():
        article = articles[name]
        assert article.status == Article.Status.PROCESSED, (name, article.processing_error)
        assert article.embedding is not None
        assert article.page_status == page_status, (name, article.page_error)
        if page_status == "fetched":
            assert text in article.body and article.page_error == ""
        else:
            assert article.page_error.startswith(text) or text in article.page_error, (name, article.page_error)
            assert article.body == "" and article.summary == f"One line about {name}."
    assert articles["newspaper"].author == "Ada Fenwick" and articles["latin"].language == "fr"
    assert "/private/memo" not in site.hits


@pytest.mark.timeout(900)
def test_a_burst_of_fetches_never_exceeds_the_per_host_limit(site: PageServer, broker) -> None:  # type: ignore[no-untyped-def]
    count = int(os.environ.get("BURST_ARTICLES", "120"))
    # Each answer takes a while, so that without the limit many requests would overlap.
    for n in range(count):
        site.serve(f"/a/{n}", pages.NEWSPAPER, delay=0.1)
    items = [(f"a/{n}", f"Story {n}", "One line.") for n in range(count)]
    feed_xml = rss(items).replace(b"https://example.invalid/", site.url("/").encode())
    feed = Feed.objects.create(url=site.serve("/feed.xml", feed_xml, content_type="application/rss+xml"))

    # Two worker processes of eight threads each: sixteen fetches could run at once.
    workers = start_workers(
        [("scraping", 2, 8)], HOST_MAX_CONCURRENT_REQUESTS="2", HOST_MIN_INTERVAL_MS="0", HOST_MAX_WAIT_SECONDS="5"
    )
    try:
        actors.scrape_feed.send(feed.pk)
        wait_for(
            lambda: (
                not Article.objects.filter(feed=feed).exclude(page_status=Article.PageStatus.FETCHED).exists()
                and Article.objects.filter(feed=feed).count() == count
            ),
            600,
            "every page fetched",
        )
    finally:
        stop(workers)

    assert site.hits_under("/a/") == count  # each page once
    assert site.max_in_flight == 2  # the limit, reached and never passed
