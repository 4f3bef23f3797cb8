"""Processing real rows: one embedding per article, its topic from that embedding, bad input isolated."""

from __future__ import annotations

import pytest

from articles.models import Article, Feed, Topic
from pipeline.understanding.embedding import EMBEDDING_DIM
from pipeline.understanding.processing import process_articles

pytestmark = pytest.mark.django_db


@pytest.fixture
def topics() -> list[Topic]:
    return [
        Topic.objects.create(name="sport", description="Sport: football, tennis, cricket, athletics, results"),
        Topic.objects.create(name="business", description="Business: companies, markets, economy, jobs"),
        Topic.objects.create(name="technology"),  # no description: the name stands in
    ]


@pytest.fixture
def local_feed() -> Feed:
    return Feed.objects.create(url="https://example.invalid/feed.xml", title="Local")


def make_article(feed: Feed, guid: str, title: str = "", summary: str = "", content: str = "") -> Article:
    return Article.objects.create(feed=feed, guid=guid, title=title, summary=summary, content=content)


def test_a_batch_with_bad_articles_goes_on_and_fails_only_those(local_feed, topics):
    good = make_article(local_feed, "good", "Striker scores twice as United win the derby")
    empty = make_article(local_feed, "empty")
    markup_only = make_article(local_feed, "markup", summary="<p> </p><script>track()</script>")
    huge = make_article(
        local_feed, "huge", "Chip maker unveils faster processor", content="<p>silicon wafer </p>" * 200_000
    )
    chinese = make_article(local_feed, "zh", "央行宣布降息以刺激经济增长")
    russian = make_article(local_feed, "ru", "Сборная выиграла чемпионат мира по хоккею")
    ids = [a.pk for a in (good, empty, markup_only, huge, chinese, russian)]

    assert process_articles(ids) == {"processed": 4, "failed": 2}

    rows = {a.guid: a for a in Article.objects.filter(pk__in=ids)}
    for guid in ("empty", "markup"):
        assert rows[guid].status == Article.Status.FAILED
        assert "no text" in rows[guid].processing_error
        assert rows[guid].embedding is None and rows[guid].topic is None
    for guid in ("good", "huge", "zh", "ru"):
        row = rows[guid]
        assert row.status == Article.Status.PROCESSED and row.processing_error == ""
        assert len(bytes(row.embedding)) == EMBEDDING_DIM * 4
        assert row.topic in topics and row.classified_by == Article.ClassifiedBy.ZERO_SHOT
        assert 0 < row.topic_confidence <= 1
    assert rows["good"].topic.name == "sport"
    # The topic without a description still wins its own articles.
    assert rows["huge"].topic.name == "technology"


def test_processing_twice_changes_nothing_the_second_time(local_feed, topics):
    article = make_article(local_feed, "a", "Shares fall as the central bank raises interest rates")
    assert process_articles([article.pk]) == {"processed": 1, "failed": 0}
    first = Article.objects.get(pk=article.pk)

    # A re-delivered message, or the same id in a second batch.
    assert process_articles([article.pk]) == {"processed": 0, "failed": 0}
    second = Article.objects.get(pk=article.pk)
    assert (second.processed_at, bytes(second.embedding), second.topic_id, second.topic_confidence) == (
        first.processed_at,
        bytes(first.embedding),
        first.topic_id,
        first.topic_confidence,
    )


def test_a_pending_article_labelled_by_a_person_keeps_its_label(local_feed, topics):
    sport, business, _ = topics
    article = make_article(local_feed, "a", "Striker scores twice as United win the derby")
    Article.objects.filter(pk=article.pk).update(topic=business, topic_confidence=1.0, classified_by="human")

    process_articles([article.pk])

    article.refresh_from_db()
    assert article.status == Article.Status.PROCESSED and article.embedding is not None
    assert (article.topic, article.topic_confidence, article.classified_by) == (business, 1.0, "human")


def test_no_topics_means_embedded_but_unclassified(local_feed):
    article = make_article(local_feed, "a", "Striker scores twice as United win the derby")
    assert process_articles([article.pk]) == {"processed": 1, "failed": 0}
    article.refresh_from_db()
    assert article.embedding is not None and article.topic is None and article.classified_by == ""


def test_the_batch_path_costs_the_same_queries_for_any_batch_size(local_feed, topics, django_assert_max_num_queries):
    warm = make_article(local_feed, "warm", "Warm-up: the topic model is built once per process")
    process_articles([warm.pk])
    titles = [f"Match report {i}: City beat Rovers in the cup" for i in range(24)]
    ids = [make_article(local_feed, f"b{i}", title).pk for i, title in enumerate(titles)]
    # Savepoint, lock the rows, topic-model fingerprint, one bulk UPDATE, release.
    with django_assert_max_num_queries(6):
        assert process_articles(ids) == {"processed": 24, "failed": 0}
