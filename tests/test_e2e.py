"""End to end: real worker processes on the real Redis broker and Postgres, feeds over real HTTP.

Enqueue through the API, watch the task and its follow-ups finish, see the articles processed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from articles.demo_feeds import demo_feeds, demo_topics
from articles.models import Topic

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


def worker_env() -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        # The workers must use the test database pytest-django created, not the development one.
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "HF_HUB_OFFLINE": "1",
        "dramatiq_queue_prefetch": "1",
    }


@pytest.fixture
def workers(broker) -> Iterator[list[subprocess.Popen]]:
    """One worker per queue, as `make run` starts them."""
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "rundramatiq", "-Q", queue, "-p", "1", "-t", threads],
            cwd=ROOT,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for queue, threads in (("scraping", "2"), ("processing", "1"))
    ]
    yield procs
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_task(api, task_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/api/tasks/{task_id}/")
        if response.status_code == 200 and response.json()["status"] in ("succeeded", "failed"):
            return response.json()
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} did not finish in {timeout} s: {response.json()}")


def test_scrape_then_process_through_the_api(operator_api, api, live_server, workers):
    Topic.objects.bulk_create([Topic(**topic) for topic in demo_topics()])
    demo = demo_feeds()[0]
    url = f"{live_server.url}/demo/feeds/{demo['file']}"
    # The demo's items link to a made-up site: their pages are not fetched (test_article_pipeline.py does that).
    created = operator_api.post("/api/feeds/", {"url": url, "full_text": "never"}, format="json")
    assert created.status_code == 201, created.json()
    feed_id = created.json()["id"]

    queued = operator_api.post(f"/api/feeds/{feed_id}/scrape/")
    assert queued.status_code == 202

    scrape = wait_for_task(api, queued.json()["task_id"])
    assert scrape["status"] == "succeeded", scrape
    assert scrape["result"]["status"] == "ok" and scrape["result"]["entries"] > 0
    new = len(scrape["result"]["new_article_ids"])
    follow_ups = scrape["result"]["follow_up_task_ids"]
    assert new > 0 and follow_ups

    for task_id in follow_ups:
        assert wait_for_task(api, task_id)["status"] == "succeeded"

    articles = api.get(f"/api/articles/?feed={feed_id}&processed=true").json()
    assert articles["count"] == new
    assert all(a["topic"] for a in articles["results"])

    # Served again: nothing new, nothing duplicated.
    again = wait_for_task(api, operator_api.post(f"/api/feeds/{feed_id}/scrape/").json()["task_id"])
    assert again["result"]["new_article_ids"] == [] and again["result"]["follow_up_task_ids"] == []
    assert api.get(f"/api/articles/?feed={feed_id}").json()["count"] == new
