"""Human labels train the supervised topic model, which takes over from zero-shot once every topic has enough."""

from __future__ import annotations

import numpy as np
import pytest

from articles.models import Topic, TopicClassifier
from pipeline.classification import LinearTopicModel
from pipeline.topic_models import SUPERVISED, ZERO_SHOT, active_topic_model, topic_model_in_force

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
