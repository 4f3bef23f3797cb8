"""Human labels train the supervised topic model, which takes over from zero-shot once every topic has enough."""

from __future__ import annotations

import numpy as np
import pytest

from articles.models import Article, Feed, Topic, TopicClassifier
from pipeline.understanding.classification import LinearTopicModel
from pipeline.understanding.labelling import label_article
from pipeline.understanding.processing import process_articles
from pipeline.understanding.topic_models import SUPERVISED, ZERO_SHOT, active_topic_model, topic_model_in_force
from pipeline.understanding.training import retrain_topic_classifier

pytestmark = pytest.mark.django_db


def _made_up_model(classes: list[int]) -> LinearTopicModel:
    rng = np.random.default_rng(0)
    return LinearTopicModel(
        tuple(classes),
        rng.normal(size=(len(classes), 384)).astype(np.float32),
        np.zeros(len(classes), dtype=np.float32),
    )


def test_no_topics_means_no_model():
    assert active_topic_model() is None


def test_model_in_force_follows_topics_and_classifiers():
    sport = Topic.objects.create(name="sport", description="Sport: football, tennis, athletics")
    politics = Topic.objects.create(name="politics")  # no description: the name stands in
    zero = topic_model_in_force()
    assert zero.classified_by == ZERO_SHOT and zero.model.classes == (sport.pk, politics.pk)
    assert topic_model_in_force() is zero  # cached while nothing changed

    row = TopicClassifier.objects.create(params=_made_up_model([sport.pk, politics.pk]).to_dict())
    supervised = topic_model_in_force()
    assert supervised.classified_by == SUPERVISED and supervised.classifier_id == row.pk

    # A new topic has no row in the supervised model: zero-shot takes over until it has labels.
    tech = Topic.objects.create(name="tech", description="Technology")
    assert topic_model_in_force().classified_by == ZERO_SHOT
    assert topic_model_in_force().model.classes == (sport.pk, politics.pk, tech.pk)
    # A deleted one only drops its row.
    tech.delete()
    after_delete = topic_model_in_force()
    assert after_delete.classified_by == SUPERVISED

    # An edited description is seen at once (zero-shot vectors are rebuilt).
    row.is_active = False
    row.save()
    before = topic_model_in_force().model.coef.copy()
    Topic.objects.filter(pk=politics.pk).update(description="Politics: elections, parliament, government")
    after = topic_model_in_force().model.coef
    assert not np.allclose(before, after)


# --- training on labels, with the real model on small made-up texts ---

SPORT = [
    "Striker scores twice as United win the derby",
    "Tennis champion reaches the Wimbledon final",
    "Athletics: sprinter breaks the 100m world record",
    "Cricket captain hits a century in the test match",
    "Boxer retains heavyweight title after twelve rounds",
]
BUSINESS = [
    "Shares fall as the central bank raises interest rates",
    "Carmaker profits double on strong sales in Asia",
    "Retailer to cut 2,000 jobs as high street sales slump",
    "Oil prices climb after producers agree output cuts",
    "Bank agrees takeover of rival lender for 3bn",
]


@pytest.fixture
def two_topics() -> tuple[Topic, Topic]:
    # Deliberately unhelpful descriptions: zero-shot has little to go on, labels must teach the model.
    return Topic.objects.create(name="alpha"), Topic.objects.create(name="beta")


@pytest.fixture
def local_feed() -> Feed:
    return Feed.objects.create(url="https://example.invalid/feed.xml", title="Local")


def processed_articles(feed: Feed, titles: list[str], prefix: str) -> list[Article]:
    articles = [Article.objects.create(feed=feed, guid=f"{prefix}{i}", title=t) for i, t in enumerate(titles)]
    process_articles([a.pk for a in articles])
    return list(Article.objects.filter(pk__in=[a.pk for a in articles]).order_by("id"))


def test_supervised_takes_over_once_every_topic_has_enough_labels(local_feed, two_topics, settings):
    settings.TOPIC_MIN_LABELS = 4
    alpha, beta = two_topics
    sport = processed_articles(local_feed, SPORT, "s")
    business = processed_articles(local_feed, BUSINESS, "b")
    for article in sport[:4]:
        label_article(article, alpha)

    outcome = retrain_topic_classifier()
    assert not outcome.trained and "short: beta" in outcome.reason
    assert outcome.label_counts == {str(alpha.pk): 4, str(beta.pk): 0}
    assert not TopicClassifier.objects.exists()

    for article in business[:4]:
        label_article(article, beta)
    outcome = retrain_topic_classifier()
    assert outcome.trained, outcome.reason
    row = TopicClassifier.objects.get(is_active=True)
    assert row.label_counts == {str(alpha.pk): 4, str(beta.pk): 4} and row.labels_digest

    # New articles are classified by the supervised model, from the one embedding processing computes.
    fresh = processed_articles(
        local_feed, ["Goalkeeper saves a penalty in the cup final", "Stock market rallies on trade deal"], "n"
    )
    assert [a.classified_by for a in fresh] == ["supervised", "supervised"]
    assert [a.topic for a in fresh] == [alpha, beta]

    # The same labels again (a re-delivered message, the hourly run): nothing new is stored.
    again = retrain_topic_classifier()
    assert not again.trained and again.classifier_id == row.pk
    assert TopicClassifier.objects.count() == 1


def test_human_labels_survive_retraining_and_reprocessing(local_feed, two_topics, settings):
    settings.TOPIC_MIN_LABELS = 2
    alpha, beta = two_topics
    sport = processed_articles(local_feed, SPORT, "s")
    business = processed_articles(local_feed, BUSINESS, "b")
    for article in sport[:2]:
        label_article(article, alpha)
    for article in business[:2]:
        label_article(article, beta)
    # A deliberately "wrong" label: the person is right by definition.
    contrarian = label_article(sport[4], beta)
    assert retrain_topic_classifier().trained

    Article.objects.filter(pk=contrarian.pk).update(status=Article.Status.PENDING)
    process_articles([contrarian.pk])
    retrain_topic_classifier()

    contrarian.refresh_from_db()
    assert contrarian.status == Article.Status.PROCESSED
    assert (contrarian.topic, contrarian.topic_confidence, contrarian.classified_by) == (beta, 1.0, "human")


def test_a_topic_added_later_hands_back_to_zero_shot_until_it_has_labels(local_feed, two_topics, settings):
    settings.TOPIC_MIN_LABELS = 2
    alpha, beta = two_topics
    sport = processed_articles(local_feed, SPORT, "s")
    business = processed_articles(local_feed, BUSINESS, "b")
    for article in sport[:2]:
        label_article(article, alpha)
    for article in business[:2]:
        label_article(article, beta)
    assert retrain_topic_classifier().trained

    Topic.objects.create(name="science", description="Science: research, space, physics, biology")
    outcome = retrain_topic_classifier()
    assert not outcome.trained and "short: science" in outcome.reason and "retired 1" in outcome.reason
    assert not TopicClassifier.objects.filter(is_active=True).exists()
    [newcomer] = processed_articles(local_feed, ["Telescope finds water on a distant planet"], "n")
    assert newcomer.classified_by == "zero_shot" and newcomer.topic.name == "science"


def test_withdrawing_a_label_reclassifies_from_the_stored_embedding(local_feed, two_topics):
    alpha, beta = two_topics
    [article] = processed_articles(local_feed, SPORT[:1], "s")
    label_article(article, beta)
    article = label_article(article, None)
    assert article.classified_by == "zero_shot" and article.topic in (alpha, beta)
    assert 0 < article.topic_confidence < 1
