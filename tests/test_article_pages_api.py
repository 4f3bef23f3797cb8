"""The API and command around article pages: feed settings, re-fetch and re-process one article."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from articles.models import Article, Feed

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_api(operator_api) -> APIClient:  # type: ignore[no-untyped-def]
    """An operator (articles/roles.py): feed settings and scrape/process triggers are operators' work."""
    return operator_api


@pytest.fixture
def article(feed: Feed) -> Article:
    return Article.objects.create(
        feed=feed, guid="g", url="http://127.0.0.1:9/a", title="Tram", status=Article.Status.PROCESSED
    )


def test_feed_full_text_and_user_agent_are_set_by_patch(staff_api, auth_api, feed) -> None:  # type: ignore[no-untyped-def]
    assert auth_api.get(f"/api/feeds/{feed.pk}/").json()["full_text"] == "auto"
    assert auth_api.patch(f"/api/feeds/{feed.pk}/", {"full_text": "never"}, format="json").status_code == 403

    response = staff_api.patch(
        f"/api/feeds/{feed.pk}/", {"full_text": "always", "user_agent": "Reader/2.0"}, format="json"
    )
    assert response.status_code == 200, response.json()
    feed.refresh_from_db()
    assert (feed.full_text, feed.user_agent) == ("always", "Reader/2.0")
    bad = staff_api.patch(f"/api/feeds/{feed.pk}/", {"full_text": "sometimes"}, format="json")
    assert bad.status_code == 400 and "full_text" in bad.json()
    assert staff_api.put(f"/api/feeds/{feed.pk}/", {"url": feed.url}, format="json").status_code == 405


def test_scrape_and_process_one_article_answer_202_with_the_task(  # type: ignore[no-untyped-def]
    staff_api, auth_api, article, broker, django_capture_on_commit_callbacks
) -> None:
    assert auth_api.post(f"/api/articles/{article.pk}/scrape/").status_code == 403
    assert auth_api.post(f"/api/articles/{article.pk}/process/").status_code == 403

    with django_capture_on_commit_callbacks(execute=True):
        scrape = staff_api.post(f"/api/articles/{article.pk}/scrape/")
    assert scrape.status_code == 202
    body = scrape.json()
    assert body["status"] == "queued" and body["status_url"].endswith(f"/api/tasks/{body['task_id']}/")
    queued = [m.decode() for m in broker.client.hvals(f"{broker.namespace}:scraping.msgs")]
    assert len(queued) == 1 and body["task_id"] in queued[0] and "scrape_article" in queued[0]
    article.refresh_from_db()
    assert article.page_status == Article.PageStatus.QUEUED

    with django_capture_on_commit_callbacks(execute=True):
        process = staff_api.post(f"/api/articles/{article.pk}/process/")
    assert process.status_code == 202
    queued = [m.decode() for m in broker.client.hvals(f"{broker.namespace}:processing.msgs")]
    assert len(queued) == 1 and process.json()["task_id"] in queued[0]
    article.refresh_from_db()
    assert article.status == Article.Status.PENDING and article.queued_at is not None

    assert staff_api.post("/api/articles/999999/scrape/").status_code == 404


def test_scrape_article_command_queues_the_fetch(article, broker, capsys, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=True):
        call_command("scrape_article", str(article.pk))
    assert capsys.readouterr().out.startswith("queued: task ")
    assert broker.client.hlen(f"{broker.namespace}:scraping.msgs") == 1
