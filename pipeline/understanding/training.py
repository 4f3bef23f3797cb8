"""Training the supervised topic model from people's labels, and deciding whether it takes over.

Labels are the articles people gave a topic (classified_by = human). Their stored embeddings are
the training set, so training never runs the embedding model on an article. Once every topic has
`TOPIC_MIN_LABELS` labels (a floor, not the switch) the supervised model is cross-validated against
zero-shot on the same folds (pipeline.understanding.cross_validation). It is stored either way, with
both accuracies and the decision; it becomes the active TopicClassifier row, which processing uses for
new articles, only when it wins. Otherwise, or when a topic is added later, zero-shot classifies.
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
from pipeline.understanding.classification import supervised_ready, train_supervised
from pipeline.understanding.cross_validation import cross_validate
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_from_bytes
from pipeline.understanding.topic_models import SUPERVISED, topic_model_in_force, zero_shot_topic_vectors

logger = logging.getLogger(__name__)

# Inactive classifiers kept for inspection in the admin; older ones are deleted.
KEEP_INACTIVE_CLASSIFIERS = 5
# pg_advisory_xact_lock key: one training at a time across every worker.
_TRAINING_LOCK = 0x6E657773_74726E  # "news" "trn"


@dataclass
class TrainingOutcome:
    trained: bool  # a supervised model was trained and stored
    reason: str
    label_counts: dict[str, int] = field(default_factory=dict)
    classifier_id: int | None = None
    adopted: bool = False  # it beat zero-shot by cross-validation and is now in force

    def as_dict(self) -> dict[str, object]:
        return {
            "trained": self.trained,
            "adopted": self.adopted,
            "reason": self.reason,
            "label_counts": self.label_counts,
            "classifier_id": self.classifier_id,
        }


def labels_digest(labels: list[tuple[int, int]], topics: list[tuple[int, str, str]] | None = None) -> str:
    """A digest of (article id, topic id) pairs and of the topics' texts: equal digests mean the same
    training set and the same zero-shot model to beat."""
    text = ";".join(f"{article_id}:{topic_id}" for article_id, topic_id in sorted(labels))
    if topics:
        text += "\x1e" + "\x1e".join(f"{topic_id}\x1f{name}\x1f{description}" for topic_id, name, description in topics)
    return hashlib.sha256(text.encode()).hexdigest()


def retrain_topic_classifier(*, min_per_topic: int | None = None) -> TrainingOutcome:
    """Train on every human label that has an embedding; the result becomes the active classifier only
    when it beats zero-shot by cross-validation on those labels (else any active one is retired too).

    Nothing changes when the labels and topics are the ones the last classifier was trained on (a
    re-delivered message, a scheduled run with no new labels). When some topic has fewer labels than the
    floor, any active classifier is retired, so zero-shot classifies until every topic is covered again.
    """
    min_per_topic = settings.TOPIC_MIN_LABELS if min_per_topic is None else min_per_topic
    # Cross-validation needs two labels of every topic (one to train on, one to score).
    min_per_topic = max(min_per_topic, 2)
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

        digest = labels_digest(labels, topics)
        latest = TopicClassifier.objects.order_by("-trained_at", "-id").first()
        if (
            latest is not None
            and latest.labels_digest == digest
            and latest.is_active == (latest.decision == TopicClassifier.Decision.SUPERVISED)
        ):
            return TrainingOutcome(
                False, "labels unchanged since the last training", label_counts, latest.pk, adopted=latest.is_active
            )

        article_ids = [article_id for article_id, _ in labels]
        rows = Article.objects.filter(pk__in=article_ids).order_by("id").values_list("topic_id", "embedding")
        targets: list[int] = []
        vectors = np.empty((len(article_ids), EMBEDDING_DIM), dtype=np.float32)
        for topic_id, data in rows.iterator(chunk_size=2000):
            if data is None:  # re-embedding cleared it since the labels were read
                continue
            vectors[len(targets)] = vector_from_bytes(data)
            targets.append(topic_id)
        vectors = vectors[: len(targets)]
        # The zero-shot prior keeps the model sensible while labels are few; the same vectors are the
        # zero-shot model in force, the one it has to beat.
        topic_vectors = dict(zip(topic_ids, zero_shot_topic_vectors(topics), strict=True))
        validation = cross_validate(vectors, targets, topic_vectors)
        # Calibrated on the folds' held-out predictions, so its confidence reads as a probability.
        model = train_supervised(vectors, targets, topic_vectors).scaled(validation.logit_scale)
        adopted = validation.decision == TopicClassifier.Decision.SUPERVISED
        # A supervised model that no longer wins on today's labels is retired too.
        active.update(is_active=False)
        row = TopicClassifier.objects.create(
            params=model.to_dict(),
            label_counts=label_counts,
            labels_digest=digest,
            is_active=adopted,
            supervised_cv_accuracy=validation.supervised_accuracy,
            zero_shot_cv_accuracy=validation.zero_shot_accuracy,
            cv_folds=validation.folds,
            decision=validation.decision,
            decision_reason=validation.reason,
        )
        stale = TopicClassifier.objects.filter(is_active=False).exclude(pk=row.pk).order_by("-trained_at", "-id")
        stale_ids = list(stale.values_list("id", flat=True)[KEEP_INACTIVE_CLASSIFIERS:])
        TopicClassifier.objects.filter(pk__in=stale_ids).delete()
    logger.info("topic classifier %s on %s labels: %s", row.pk, len(targets), validation.reason)
    return TrainingOutcome(True, validation.reason, label_counts, row.pk, adopted=adopted)


@dataclass(frozen=True)
class TopicModelStatus:
    """Which topic model is in force and why, for the admin's topic-classifier page."""

    in_force: str  # "supervised" or "zero_shot"
    reason: str
    classifier_id: int | None
    label_counts: dict[str, int]  # topic name -> labels today
    min_per_topic: int


def topic_model_status() -> TopicModelStatus:
    in_force = topic_model_in_force()
    floor = max(settings.TOPIC_MIN_LABELS, 2)
    counts = Counter(
        Article.objects.filter(
            classified_by=Article.ClassifiedBy.HUMAN, topic__isnull=False, embedding__isnull=False
        ).values_list("topic__name", flat=True)
    )
    names = list(Topic.objects.order_by("id").values_list("name", flat=True))
    label_counts = {name: counts.get(name, 0) for name in names}
    latest = TopicClassifier.objects.order_by("-trained_at", "-id").first()
    if in_force.classified_by == SUPERVISED and in_force.classifier_id is not None:
        row = TopicClassifier.objects.filter(pk=in_force.classifier_id).first()
        reason = row.decision_reason if row and row.decision_reason else "trained before cross-validation decided"
    elif latest is None:
        reason = f"no supervised model tried yet: each topic needs {floor} labels (TOPIC_MIN_LABELS) first"
    elif latest.decision == TopicClassifier.Decision.ZERO_SHOT:
        reason = latest.decision_reason
    else:
        short = [name for name, count in label_counts.items() if count < floor]
        reason = (
            f"the last supervised model was retired: {', '.join(short)} below {floor} labels"
            if short
            else "the last supervised model does not cover today's topics; the next training decides again"
        )
    return TopicModelStatus(in_force.classified_by, reason, in_force.classifier_id, label_counts, floor)
