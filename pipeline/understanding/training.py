"""Training the supervised topic model from people's labels, and asking for it to happen.

Labels are the articles people gave a topic (classified_by = human). Their stored embeddings are
the training set, so training never runs the embedding model on an article. Once every topic has
enough labels the trained model is stored as the active TopicClassifier row and processing uses it
for new articles; until then (or when a topic is added later) zero-shot classifies.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from articles.models import Article, Topic, TopicClassifier
from pipeline.understanding.classification import embed_topics, supervised_ready, train_supervised
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_from_bytes

logger = logging.getLogger(__name__)

# Inactive classifiers kept for inspection in the admin; older ones are deleted.
KEEP_INACTIVE_CLASSIFIERS = 5
# pg_advisory_xact_lock key: one training at a time across every worker.
_TRAINING_LOCK = 0x6E657773_74726E  # "news" "trn"


@dataclass
class TrainingOutcome:
    trained: bool
    reason: str
    label_counts: dict[str, int] = field(default_factory=dict)
    classifier_id: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "trained": self.trained,
            "reason": self.reason,
            "label_counts": self.label_counts,
            "classifier_id": self.classifier_id,
        }


def labels_digest(labels: list[tuple[int, int]]) -> str:
    """A digest of (article id, topic id) pairs: equal digests mean the same training set."""
    text = ";".join(f"{article_id}:{topic_id}" for article_id, topic_id in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()


def retrain_topic_classifier(*, min_per_topic: int | None = None) -> TrainingOutcome:
    """Train on every human label that has an embedding and make the result the active classifier.

    Nothing changes when the labels are the ones the active classifier was trained on (a re-delivered
    message, a scheduled run with no new labels). When some topic lacks labels, any active classifier
    is retired, so zero-shot classifies until every topic is covered again.
    """
    min_per_topic = settings.TOPIC_MIN_LABELS if min_per_topic is None else min_per_topic
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_TRAINING_LOCK])
        topics = list(Topic.objects.order_by("id").values_list("id", "name", "description"))
        topic_ids = [topic_id for topic_id, _, _ in topics]
        labels = list(
            Article.objects.filter(
                classified_by=Article.ClassifiedBy.HUMAN, topic__isnull=False, embedding__isnull=False
            ).values_list("id", "topic_id")
        )
        counts = Counter(topic_id for _, topic_id in labels)
        label_counts = {str(topic_id): counts.get(topic_id, 0) for topic_id in topic_ids}
        active = TopicClassifier.objects.filter(is_active=True)

        if not supervised_ready(counts, topic_ids, min_per_topic):
            retired = active.update(is_active=False)
            short = [name for topic_id, name, _ in topics if counts.get(topic_id, 0) < min_per_topic]
            reason = (
                f"needs {min_per_topic} labels per topic; short: {', '.join(short)}"
                if short
                else "needs at least two topics"
            )
            if retired:
                reason += f"; retired {retired} classifier(s), zero-shot classifies"
            return TrainingOutcome(False, reason, label_counts)

        digest = labels_digest(labels)
        current = active.order_by("-trained_at", "-id").first()
        if current is not None and current.labels_digest == digest:
            return TrainingOutcome(False, "labels unchanged since the active classifier", label_counts, current.pk)

        article_ids = [article_id for article_id, _ in labels]
        rows = Article.objects.filter(pk__in=article_ids).values_list("topic_id", "embedding")
        targets: list[int] = []
        vectors = np.empty((len(article_ids), EMBEDDING_DIM), dtype=np.float32)
        for i, (topic_id, data) in enumerate(rows.iterator(chunk_size=2000)):
            vectors[i] = vector_from_bytes(data)
            targets.append(topic_id)
        vectors = vectors[: len(targets)]
        # The zero-shot prior keeps the model sensible while labels are few.
        topic_vectors = dict(
            zip(topic_ids, embed_topics([(name, description) for _, name, description in topics]), strict=True)
        )
        model = train_supervised(vectors, targets, topic_vectors)
        active.update(is_active=False)
        row = TopicClassifier.objects.create(
            params=model.to_dict(), label_counts=label_counts, labels_digest=digest, is_active=True
        )
        stale = TopicClassifier.objects.filter(is_active=False).order_by("-trained_at", "-id")
        stale_ids = list(stale.values_list("id", flat=True)[KEEP_INACTIVE_CLASSIFIERS:])
        TopicClassifier.objects.filter(pk__in=stale_ids).delete()
    logger.info("trained topic classifier %s on %s labels", row.pk, len(targets))
    return TrainingOutcome(True, f"trained on {len(targets)} labels", label_counts, row.pk)
