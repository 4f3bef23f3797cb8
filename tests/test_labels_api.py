"""People label articles through the API and the admin; labels queue one retraining per burst."""

from __future__ import annotations

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from articles.models import Article, Feed, Topic, TopicClassifier
from pipeline import actors
from pipeline.understanding.processing import process_articles
from tests.support.in_process_worker import in_process_worker

# Committed transactions, as in production: retraining is queued on commit.
pytestmark = pytest.mark.django_db(transaction=True)

TITLES = {
    "sport": ["Striker scores twice as United win the derby", "Tennis champion reaches the Wimbledon final"],
    "business": ["Shares fall as the central bank raises interest rates", "Carmaker profits double on Asian sales"],
}


@pytest.fixture(autouse=True)
def no_retraining_requested() -> None:
    """The request flag outlives a test (queues are flushed, the flag is not): start without one."""
    actors.clear_retraining_request()


@pytest.fixture
def topics() -> dict[str, Topic]:
    return {
        "sport": Topic.objects.create(name="sport", description="Sport: football, tennis, results"),
        "business": Topic.objects.create(name="business", description="Business: companies, markets, economy"),
    }


@pytest.fixture
def articles(topics) -> list[Article]:
    feed = Feed.objects.create(url="https://example.invalid/feed.xml")
    rows = [
        Article.objects.create(feed=feed, guid=f"{name}-{i}", title=title)
        for name, titles in TITLES.items()
        for i, title in enumerate(titles)
    ]
    process_articles([a.pk for a in rows])
    return list(Article.objects.filter(pk__in=[a.pk for a in rows]).order_by("id"))


def queued_retrainings(broker: dramatiq.Broker) -> int:
    """Retraining messages waiting on the processing queue or its delay queue."""
    client, ns = broker.client, broker.namespace
    found = 0
    for queue in (f"{ns}:processing", f"{ns}:processing.DQ"):
        for message_id in client.lrange(queue, 0, -1):
            data = client.hget(f"{queue}.msgs", message_id)
            if data and b"retrain_topic_classifier" in data:
                found += 1
    return found


def test_patch_by_name_or_id_records_a_human_label(operator_api, articles, topics, broker):
    article = articles[0]
    response = operator_api.patch(f"/api/articles/{article.pk}/", {"topic": "business"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["topic"], body["topic_confidence"], body["classified_by"]) == ("business", 1.0, "human")

    response = operator_api.patch(f"/api/articles/{article.pk}/", {"topic": topics["sport"].pk}, format="json")
    assert response.json()["topic"] == "sport"
    response = operator_api.patch(f"/api/articles/{article.pk}/", {"topic": str(topics["business"].pk)}, format="json")
    assert response.json()["topic"] == "business"
    article.refresh_from_db()
    assert (article.topic, article.classified_by) == (topics["business"], "human")


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"topic": "cooking"}, "topic", "no topic named or numbered"),
        ({"topic": 999_999}, "topic", "no topic named or numbered"),
        ({"topic": None}, "topic", "null"),
        ({"topic": ["sport"]}, "topic", "name or id"),
        ({}, "topic", "required"),
        ({"topic": "sport", "title": "new title"}, "title", "only an article's topic"),
    ],
)
def test_bad_labels_are_400_with_a_reason(operator_api, articles, body, field, reason):
    response = operator_api.patch(f"/api/articles/{articles[0].pk}/", body, format="json")
    assert response.status_code == 400
    assert reason in str(response.json()[field])
    assert Article.objects.get(pk=articles[0].pk).classified_by == "zero_shot"


def test_labelling_needs_a_user_and_an_existing_article(api, operator_api, articles):
    assert api.patch(f"/api/articles/{articles[0].pk}/", {"topic": "sport"}, format="json").status_code in (401, 403)
    assert operator_api.patch("/api/articles/999999/", {"topic": "sport"}, format="json").status_code == 404
    assert operator_api.patch("/api/articles/not-an-id/", {"topic": "sport"}, format="json").status_code == 404
    assert operator_api.put(f"/api/articles/{articles[0].pk}/", {"topic": "sport"}, format="json").status_code == 405


def test_the_admin_records_labels(articles, topics, broker):
    admin_user = get_user_model().objects.create_superuser("operator", password="operator-password-1")
    client = Client()
    client.force_login(admin_user)
    article = articles[0]  # zero-shot called it sport

    response = client.post(f"/admin/articles/article/{article.pk}/change/", {"topic": topics["business"].pk})
    assert response.status_code == 302, response.content[:2000]
    article.refresh_from_db()
    assert (article.topic, article.topic_confidence, article.classified_by) == (topics["business"], 1.0, "human")

    # The bulk action confirms the classifier's topics as labels.
    others = [a.pk for a in articles[1:]]
    response = client.post(
        "/admin/articles/article/", {"action": "confirm_topics", "_selected_action": others}, follow=True
    )
    assert response.status_code == 200
    assert set(Article.objects.filter(pk__in=others).values_list("classified_by", flat=True)) == {"human"}


def test_a_burst_of_labels_queues_one_retraining_and_a_worker_trains(operator_api, articles, topics, broker, settings):
    settings.TOPIC_MIN_LABELS = 2
    settings.RETRAIN_DELAY_SECONDS = 0  # straight onto the queue, so the worker below takes it at once
    for article, name in zip(articles, ["sport", "sport", "business", "business"], strict=True):
        assert operator_api.patch(f"/api/articles/{article.pk}/", {"topic": name}, format="json").status_code == 200
    assert queued_retrainings(broker) == 1

    with in_process_worker(broker) as worker:
        broker.join(actors.PROCESSING, timeout=60_000)
        worker.join()
    # The worker trained and cross-validated (zero-shot already gets these four right, so it stays in force).
    classifier = TopicClassifier.objects.get()
    assert classifier.label_counts == {str(topics["sport"].pk): 2, str(topics["business"].pk): 2}
    assert classifier.decision_reason and classifier.zero_shot_cv_accuracy is not None

    # The actor cleared the request flag: the next label queues the next training.
    operator_api.patch(f"/api/articles/{articles[0].pk}/", {"topic": "business"}, format="json")
    assert queued_retrainings(broker) == 1


def test_labels_wait_for_the_delay_so_a_burst_trains_once(operator_api, articles, broker, settings):
    settings.RETRAIN_DELAY_SECONDS = 30
    for article in articles:
        operator_api.patch(f"/api/articles/{article.pk}/", {"topic": "sport"}, format="json")
    client, ns = broker.client, broker.namespace
    assert client.llen(f"{ns}:processing.DQ") == 1 and client.llen(f"{ns}:processing") == 0
