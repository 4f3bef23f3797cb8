"""The REST API: validation, permissions, 202 + task id for queued work, task status lookup."""

from __future__ import annotations

import pytest
from dramatiq.brokers.redis import RedisBroker

from articles.models import Article, Feed
from pipeline import actors
from pipeline.feeds.scraping import scrape_feed
from pipeline.taskqueue.models import TaskRecord
from tests.support.in_process_worker import in_process_worker

# Committed transactions, as in production: messages are sent on commit.
pytestmark = pytest.mark.django_db(transaction=True)


def test_adding_a_feed_needs_a_user(api):
    response = api.post("/api/feeds/", {"url": "https://example.org/feed.xml"}, format="json")
    assert response.status_code in (401, 403)
    assert not Feed.objects.exists()


@pytest.mark.parametrize("url", ["not a url", "ftp://example.org/feed", "", "javascript:alert(1)"])
def test_malformed_feed_url_is_a_400_naming_the_field(operator_api, url):
    response = operator_api.post("/api/feeds/", {"url": url}, format="json")
    assert response.status_code == 400
    assert "url" in response.json()


def test_duplicate_feed_url_is_a_400(operator_api, feed):
    response = operator_api.post("/api/feeds/", {"url": feed.url}, format="json")
    assert response.status_code == 400 and "url" in response.json()


def test_add_and_list_feeds(operator_api, api):
    response = operator_api.post("/api/feeds/", {"url": "https://example.org/feed.xml"}, format="json")
    assert response.status_code == 201
    listed = api.get("/api/feeds/").json()
    assert [f["url"] for f in listed["results"]] == ["https://example.org/feed.xml"]


def test_scrape_answers_202_with_a_task_id_that_can_be_looked_up(operator_api, api, feed, broker):
    response = operator_api.post(f"/api/feeds/{feed.pk}/scrape/")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["task_id"]
    assert broker.client.llen(f"{broker.namespace}:scraping") == 1

    task = api.get(f"/api/tasks/{body['task_id']}/")
    assert task.status_code == 200
    assert task.json()["status"] == "queued" and task.json()["origin"] == "api"


def test_process_articles_answers_202(operator_api, broker):
    response = operator_api.post("/api/process-articles/")
    assert response.status_code == 202 and response.json()["task_id"]


def test_unknown_task_is_404(api):
    assert api.get("/api/tasks/00000000-0000-0000-0000-00000000dead/").status_code == 404
    assert api.get("/api/tasks/not-a-task/").status_code == 404


def test_finished_task_shows_its_result(api, feed, broker):
    """Run a queued message through a real in-process worker and read the outcome by task id."""
    message = actors.scrape_feed.send_with_options(args=(feed.pk,), kwargs={"chain": False}, origin="api")
    with in_process_worker(broker) as worker:
        broker.join(actors.scrape_feed.queue_name, timeout=30_000)
        worker.join()
    body = api.get(f"/api/tasks/{message.message_id}/").json()
    assert body["status"] == "succeeded", body
    assert body["result"]["status"] == "ok" and len(body["result"]["new_article_ids"]) == 2
    assert body["duration_seconds"] is not None and body["worker"]


def test_broker_outage_is_a_clear_503(operator_api, feed, monkeypatch):
    # A real broker pointed at a port where nothing listens: the connection is refused at once.
    monkeypatch.setattr(actors.scrape_feed, "broker", RedisBroker(url="redis://127.0.0.1:9/0"))
    response = operator_api.post(f"/api/feeds/{feed.pk}/scrape/")
    assert response.status_code == 503
    assert "unavailable" in response.json()["detail"]


def test_article_filters(api, feed):
    scrape_feed(feed.pk)
    other = Feed.objects.create(url="https://example.invalid/other")
    Article.objects.create(feed=other, guid="o-1", title="Other")
    assert api.get("/api/articles/").json()["count"] == 3
    assert api.get(f"/api/articles/?feed={feed.pk}").json()["count"] == 2
    assert api.get("/api/articles/?processed=false").json()["count"] == 3
    assert api.get("/api/articles/?processed=true").json()["count"] == 0
    assert api.get("/api/articles/?since=2026-11-02T10:01:00Z").json()["count"] == 1
    assert api.get("/api/articles/?since=yesterday").status_code == 400
    article = Article.objects.filter(feed=feed).first()
    assert api.get(f"/api/articles/{article.pk}/").json()["title"] == article.title


def test_task_records_exist_for_every_enqueue(operator_api, feed, broker):
    operator_api.post(f"/api/feeds/{feed.pk}/scrape/")
    assert TaskRecord.objects.filter(actor_name="scrape_feed", status="enqueued").count() == 1
