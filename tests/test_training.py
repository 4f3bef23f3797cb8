"""Human labels train the supervised topic model, which takes over from zero-shot once every topic has enough
labels and it beats zero-shot by cross-validation on them."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model

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


def test_model_in_force_is_kept_per_precision(settings):
    # A process embedding at two precisions (bench_precision switches batch by batch) keeps each one's
    # model: switching back does not embed the topics again.
    Topic.objects.create(name="sport", description="Sport: football, tennis, athletics")
    Topic.objects.create(name="politics", description="Politics: elections, parliament")
    settings.EMBEDDING_PRECISION = "fp32"
    fp32 = topic_model_in_force()
    settings.EMBEDDING_PRECISION = "bf16"
    bf16 = topic_model_in_force()
    assert bf16 is not fp32 and not np.array_equal(bf16.model.coef, fp32.model.coef)
    settings.EMBEDDING_PRECISION = "fp32"
    assert topic_model_in_force() is fp32
    settings.EMBEDDING_PRECISION = "bf16"
    assert topic_model_in_force() is bf16
    # A change of topics still replaces the model at the precision in force.
    Topic.objects.create(name="tech", description="Technology")
    assert topic_model_in_force().model.classes != bf16.model.classes


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


def test_supervised_takes_over_when_labels_beat_zero_shot(local_feed, two_topics, settings):
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
    assert outcome.trained and outcome.adopted, outcome.reason
    row = TopicClassifier.objects.get(is_active=True)
    assert row.label_counts == {str(alpha.pk): 4, str(beta.pk): 4} and row.labels_digest
    # Names that say nothing ("alpha", "beta"): the labels teach what zero-shot cannot know.
    assert row.decision == TopicClassifier.Decision.SUPERVISED and row.cv_folds == 4
    assert row.supervised_cv_accuracy > row.zero_shot_cv_accuracy, row.decision_reason
    assert "takes over" in row.decision_reason

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
    settings.TOPIC_MIN_LABELS = 4
    alpha, beta = two_topics
    sport = processed_articles(local_feed, SPORT, "s")
    business = processed_articles(local_feed, BUSINESS, "b")
    for article in sport[:4]:
        label_article(article, alpha)
    for article in business[:4]:
        label_article(article, beta)
    assert retrain_topic_classifier().adopted

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


# --- the labelled set where a few labels do not help ---

MORE_SPORT = [
    "Goalkeeper saves a late penalty to keep a clean sheet",
    "Formula One driver takes pole position in Monaco",
    "Golfer wins the Open by three strokes",
]
MORE_BUSINESS = [
    "Supermarket chain reports record annual profits",
    "Airline shares slide after fuel costs soar",
    "Tech firm floats on the stock market at 20 dollars a share",
]


@pytest.fixture
def described_topics() -> tuple[Topic, Topic]:
    # Descriptions that say what the topics are: zero-shot already gets these texts right.
    return (
        Topic.objects.create(
            name="sport", description="Sport: football, tennis, athletics, cricket, golf, motor racing"
        ),
        Topic.objects.create(
            name="business", description="Business: companies, markets, shares, profits, jobs, prices"
        ),
    )


def test_labels_that_do_not_beat_zero_shot_leave_it_in_force_and_say_why(local_feed, described_topics, settings):
    settings.TOPIC_MIN_LABELS = 4
    sport_topic, business_topic = described_topics
    sport = processed_articles(local_feed, SPORT + MORE_SPORT, "s")
    business = processed_articles(local_feed, BUSINESS + MORE_BUSINESS, "b")
    # A hurried person: most labels right, two in each topic given the other one.
    for article in sport[:6]:
        label_article(article, sport_topic)
    for article in sport[6:]:
        label_article(article, business_topic)
    for article in business[:6]:
        label_article(article, business_topic)
    for article in business[6:]:
        label_article(article, sport_topic)

    outcome = retrain_topic_classifier()
    # The old rule (enough labels per topic) would have switched; cross-validation keeps zero-shot.
    assert outcome.trained and not outcome.adopted, outcome.reason
    row = TopicClassifier.objects.get()
    assert not row.is_active and row.decision == TopicClassifier.Decision.ZERO_SHOT
    assert row.supervised_cv_accuracy <= row.zero_shot_cv_accuracy, row.decision_reason
    assert "zero-shot stays" in row.decision_reason
    assert topic_model_in_force().classified_by == ZERO_SHOT
    [fresh] = processed_articles(local_feed, ["Midfielder signs a new contract with the champions"], "n")
    assert (fresh.classified_by, fresh.topic) == ("zero_shot", sport_topic)

    # Nothing new: the same labels decide nothing again.
    again = retrain_topic_classifier()
    assert not again.trained and again.classifier_id == row.pk and TopicClassifier.objects.count() == 1


def test_the_admin_topic_classifier_page_shows_both_accuracies_and_why(local_feed, described_topics, settings, client):
    settings.TOPIC_MIN_LABELS = 4
    sport_topic, business_topic = described_topics
    client.force_login(get_user_model().objects.create_superuser("operator", password="operator-password-1"))
    page = client.get("/admin/articles/topicclassifier/")
    assert page.status_code == 200
    assert b"Topic model in force: zero-shot" in page.content and b"no supervised model tried yet" in page.content

    for article in processed_articles(local_feed, SPORT[:4], "s"):
        label_article(article, sport_topic)
    for article in processed_articles(local_feed, BUSINESS[:4], "b"):
        label_article(article, business_topic)
    retrain_topic_classifier()
    row = TopicClassifier.objects.get()
    page = client.get("/admin/articles/topicclassifier/").content.decode()
    assert row.decision_reason in page.replace("&#x27;", "'")
    assert f"{row.supervised_cv_accuracy}" in page or f"{row.supervised_cv_accuracy:.3f}"[:4] in page
    expected = "supervised" if row.is_active else "zero-shot"
    assert f"Topic model in force: {expected}" in page
    assert "sport 4, business 4" in page
