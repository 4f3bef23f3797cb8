"""Zero-shot re-centred on the articles it confidently classifies (no labels)."""

from __future__ import annotations

import numpy as np
import pytest

from articles.models import Article, Feed, Topic
from pipeline.understanding.classification import embed_topics, zero_shot_model
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_to_bytes
from pipeline.understanding.recentring import recentre_topic_vectors
from pipeline.understanding.topic_models import topic_model_in_force


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _world(seed: int = 0, per_topic: int = 60):
    """Three topics whose descriptions point off the articles' true centres."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.standard_normal((3, EMBEDDING_DIM)))
    # Each description leans towards another topic: zero-shot confuses them at the margins.
    descriptions = _unit(
        centres + 0.8 * np.roll(centres, 1, axis=0) + 0.3 * _unit(rng.standard_normal((3, EMBEDDING_DIM)))
    )
    labels = np.repeat(np.arange(3), per_topic)
    articles = _unit(centres[labels] + 3.0 * rng.standard_normal((len(labels), EMBEDDING_DIM)) / np.sqrt(EMBEDDING_DIM))
    return descriptions, articles, labels


def _accuracy(topic_vectors: np.ndarray, articles: np.ndarray, labels: np.ndarray) -> float:
    predicted, _ = zero_shot_model(range(3), topic_vectors).predict(articles)
    return float(np.mean(np.array(predicted) == labels))


def test_recentring_moves_topics_towards_their_articles_and_classifies_better() -> None:
    descriptions, articles, labels = _world()
    moved = recentre_topic_vectors(descriptions, articles, min_articles=10)
    assert not np.allclose(moved, descriptions)
    assert np.allclose(np.linalg.norm(moved, axis=1), 1.0, atol=1e-5)
    # 83 % from the descriptions alone; the articles' own centres fix the confusion.
    assert _accuracy(descriptions, articles, labels) < 0.9 < _accuracy(moved, articles, labels)


def test_a_topic_with_too_few_confident_articles_keeps_its_description() -> None:
    descriptions, articles, _ = _world(per_topic=8)
    assert np.allclose(recentre_topic_vectors(descriptions, articles, min_articles=1000), descriptions)
    assert np.allclose(recentre_topic_vectors(descriptions, articles, min_articles=0), descriptions)


@pytest.mark.django_db
def test_the_zero_shot_model_in_force_is_recentred_once_enough_articles_are_processed(settings) -> None:
    settings.TOPIC_RECENTRE_MIN_ARTICLES = 5
    sport = Topic.objects.create(name="sport", description="Sport: football, tennis, athletics")
    business = Topic.objects.create(name="business", description="Business: companies, markets, jobs")
    plain = embed_topics([("sport", sport.description), ("business", business.description)])
    assert np.allclose(topic_model_in_force().model.coef * 0.03, plain, atol=1e-5)  # no articles yet

    feed = Feed.objects.create(url="https://example.invalid/feed.xml")
    rng = np.random.default_rng(1)
    # Articles near each description: zero-shot is sure of them, so they pull their topic's vector.
    vectors = _unit(np.repeat(plain, 6, axis=0) + 0.5 * _unit(rng.standard_normal((12, EMBEDDING_DIM))))
    Article.objects.bulk_create(
        Article(feed=feed, guid=f"a{i}", status=Article.Status.PROCESSED, embedding=vector_to_bytes(v))
        for i, v in enumerate(vectors)
    )
    # The fingerprint rebuilds the model every few hundred new articles; new topics force it here.
    Topic.objects.filter(pk=sport.pk).update(description=sport.description + ".")
    moved = topic_model_in_force().model.coef * 0.03
    expected = recentre_topic_vectors(
        embed_topics([("sport", sport.description + "."), ("business", business.description)]),
        vectors[::-1],  # newest first, as loaded; the mean does not care
        min_articles=5,
    )
    assert np.allclose(moved, expected, atol=1e-4) and not np.allclose(moved, plain, atol=1e-3)

    settings.TOPIC_RECENTRE_MIN_ARTICLES = 0  # off: the descriptions alone
    Topic.objects.filter(pk=sport.pk).update(description=sport.description)
    assert np.allclose(topic_model_in_force().model.coef * 0.03, plain, atol=1e-5)
