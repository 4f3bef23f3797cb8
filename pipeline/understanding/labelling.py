"""People's topic labels: a label outranks every classifier, and withdrawing one re-derives the topic."""

from __future__ import annotations

from django.db import transaction

from articles.models import Article, Topic
from pipeline.understanding.embedding import vector_from_bytes
from pipeline.understanding.topic_models import topic_model_in_force


def label_article(article: Article, topic: Topic | None) -> Article:
    """Record a person's topic for the article (confidence 1.0, classified_by human).

    No classifier overwrites a human label. `None` withdraws the label: the article takes the topic
    the model in force gives its stored embedding (no model pass), or none while it has no embedding.
    Callers queue a retraining afterwards (pipeline.actors.request_retraining).
    """
    with transaction.atomic():
        article = Article.objects.select_for_update().get(pk=article.pk)
        if topic is not None:
            article.topic, article.topic_confidence, article.classified_by = topic, 1.0, Article.ClassifiedBy.HUMAN
        else:
            in_force = topic_model_in_force()
            article.topic, article.topic_confidence, article.classified_by = None, None, ""
            if article.embedding is not None and in_force.model is not None:
                predicted, confidence = in_force.model.predict(vector_from_bytes(article.embedding))
                article.topic_id, article.topic_confidence = int(str(predicted[0])), float(confidence[0])
                article.classified_by = in_force.classified_by
        article.save(update_fields=["topic", "topic_confidence", "classified_by"])
    return article
