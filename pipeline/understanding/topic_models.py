"""The topic model in force: the newest active supervised TopicClassifier when it covers today's
topics, else zero-shot over the Topic rows (re-centred on the articles it confidently classifies,
pipeline.understanding.recentring). Classes are topic ids.

Each process keeps the model it built and checks a one-query fingerprint of the topics and the
newest active classifier on every call, so a retraining committed by a worker on another machine,
or a topic edited in the admin, is picked up by the next call anywhere.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection

from articles.models import Article, Topic, TopicClassifier
from pipeline.understanding import recentring
from pipeline.understanding.classification import LinearTopicModel, embed_topics, zero_shot_model
from pipeline.understanding.embedding import precision_in_force

ZERO_SHOT = "zero_shot"
SUPERVISED = "supervised"

# One round trip: the newest active classifier, a digest of every topic's id, name and description, and
# which block of recentring.EVERY_ARTICLES article ids the newest article is in (zero-shot is re-centred
# again when it changes; max(id) is one step down the primary key index).
_FINGERPRINT = f"""
SELECT
    (SELECT id FROM {TopicClassifier._meta.db_table} WHERE is_active ORDER BY trained_at DESC, id DESC LIMIT 1),
    (SELECT md5(string_agg(id::text || chr(31) || name || chr(31) || description, chr(30) ORDER BY id))
     FROM {Topic._meta.db_table}),
    (SELECT max(id) / {recentring.EVERY_ARTICLES} FROM {Article._meta.db_table})
"""


@dataclass(frozen=True, eq=False)
class TopicModelInForce:
    """The model and what the articles it classifies record as `classified_by`."""

    model: LinearTopicModel | None  # None when there are no topics
    classified_by: str
    classifier_id: int | None = None  # the TopicClassifier row, when supervised


# Keyed by the fingerprint and the embedding precision (zero-shot topic vectors are made at it).
_cache: dict[tuple[int | None, str | None, int | None, str], TopicModelInForce] = {}
_lock = threading.Lock()


def _fingerprint() -> tuple[int | None, str | None, int | None]:
    with connection.cursor() as cursor:
        cursor.execute(_FINGERPRINT)
        classifier_id, topics_digest, article_block = cursor.fetchone()
    return classifier_id, topics_digest, article_block


def zero_shot_topic_vectors(topics: list[tuple[int, str, str]]) -> np.ndarray:
    """The zero-shot vectors in force for (id, name, description) rows: the descriptions' embeddings,
    re-centred on the newest articles when `TOPIC_RECENTRE_MIN_ARTICLES` allows."""
    vectors = embed_topics([(name, description) for _, name, description in topics])
    if settings.TOPIC_RECENTRE_MIN_ARTICLES > 0:
        vectors = recentring.recentre_topic_vectors(
            vectors, recentring.newest_article_vectors(), min_articles=settings.TOPIC_RECENTRE_MIN_ARTICLES
        )
    return vectors


def _build(classifier_id: int | None) -> TopicModelInForce:
    topics = list(Topic.objects.order_by("id").values_list("id", "name", "description"))
    if not topics:
        return TopicModelInForce(None, ZERO_SHOT)
    topic_ids = [topic_id for topic_id, _, _ in topics]
    if classifier_id is not None:
        row = TopicClassifier.objects.filter(pk=classifier_id).only("params").first()
        supervised = restrict_to_topics(LinearTopicModel.from_dict(row.params), topic_ids) if row else None
        if supervised is not None:
            return TopicModelInForce(supervised, SUPERVISED, classifier_id)
    return TopicModelInForce(zero_shot_model(topic_ids, zero_shot_topic_vectors(topics)), ZERO_SHOT)


def restrict_to_topics(model: LinearTopicModel, topic_ids: list[int]) -> LinearTopicModel | None:
    """The model over exactly `topic_ids`, or None when it cannot predict one of them.

    A topic added after training has no row in the model (zero-shot must take over until it has
    labels); a topic deleted since only drops its row.
    """
    rows = {topic_id: i for i, topic_id in enumerate(model.classes)}
    if any(topic_id not in rows for topic_id in topic_ids) or len(topic_ids) < 2:
        return None
    keep = [rows[topic_id] for topic_id in topic_ids]
    return LinearTopicModel(tuple(topic_ids), model.coef[keep], model.intercept[keep])


def topic_model_in_force() -> TopicModelInForce:
    """The current topic model and its kind; cached per process, rebuilt when topics or classifiers change."""
    key = (*_fingerprint(), precision_in_force())
    found = _cache.get(key)
    if found is not None:
        return found
    with _lock:
        found = _cache.get(key)
        if found is None:
            found = _build(key[0])
            # Only the newest state is worth keeping, per precision: a process that embeds at two (the
            # precision bench switches batch by batch) would otherwise rebuild at every switch.
            for stale in [k for k in _cache if k[-1] == key[-1]]:
                del _cache[stale]
            _cache[key] = found
    return found


def active_topic_model() -> LinearTopicModel | None:
    """The topic model other code should use (classes are topic ids); None when no topic exists."""
    return topic_model_in_force().model
