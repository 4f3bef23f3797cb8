"""Process pending articles: one embedding per article, and its topic derived from that embedding."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from django.db import transaction
from django.utils import timezone

from articles.models import Article
from pipeline.understanding import embedding
from pipeline.understanding.topic_models import topic_model_in_force

logger = logging.getLogger(__name__)

PROCESSED_FIELDS = [
    "status",
    "processing_error",
    "processed_at",
    "embedding",
    "topic",
    "topic_confidence",
    "classified_by",
]


def _embed_isolating_failures(texts: list[str]) -> tuple[np.ndarray | None, list[str | None]]:
    """Embed the batch in one pass; if that fails, embed one by one so one bad text fails alone."""
    try:
        return embedding.embed_texts(texts), [None] * len(texts)
    except Exception:  # noqa: BLE001 - isolate the culprit below
        logger.warning("batch embedding failed; retrying article by article", exc_info=True)
    vectors = np.zeros((len(texts), embedding.EMBEDDING_DIM), dtype=np.float32)
    errors: list[str | None] = []
    for i, text in enumerate(texts):
        try:
            vectors[i] = embedding.embed_texts([text])[0]
            errors.append(None)
        except Exception as error:  # noqa: BLE001 - recorded on the article
            errors.append(f"embedding failed: {type(error).__name__}: {error}"[:1000])
    return vectors, errors


def process_articles(article_ids: Sequence[int]) -> dict[str, int]:
    """Embed and classify those of `article_ids` that are still pending.

    Rows are locked (SKIP LOCKED) for the batch and only pending ones are touched, so a re-delivered
    message or an overlapping sweep changes nothing twice.
    """
    now = timezone.now()
    with transaction.atomic():
        articles = list(
            Article.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(article_ids), status=Article.Status.PENDING)
            .order_by("id")
        )
        if not articles:
            return {"processed": 0, "failed": 0}
        texts = [embedding.article_text(a.title, a.summary, a.content) for a in articles]
        usable = [i for i, text in enumerate(texts) if text.strip()]
        errors: list[str | None] = ["no text to embed (empty title and summary)"] * len(articles)

        vectors: np.ndarray | None = None
        if usable:
            vectors, usable_errors = _embed_isolating_failures([texts[i] for i in usable])
            for i, error in zip(usable, usable_errors, strict=True):
                errors[i] = error

        # The topic comes from the embedding just computed: no second model pass.
        in_force = topic_model_in_force()
        topic_ids: list[int] = []
        confidences: list[float] = []
        if vectors is not None and in_force.model is not None:
            predicted, probabilities = in_force.model.predict(vectors)
            topic_ids, confidences = [int(t) for t in predicted], [float(p) for p in probabilities]

        for position, i in enumerate(usable):
            article = articles[i]
            if errors[i] is not None:
                continue
            assert vectors is not None
            article.embedding = embedding.vector_to_bytes(vectors[position])
            # A person's label outranks any classifier, whatever the article's status.
            if topic_ids and article.classified_by != Article.ClassifiedBy.HUMAN:
                article.topic_id = topic_ids[position]
                article.topic_confidence = confidences[position]
                article.classified_by = in_force.classified_by
        for article, error in zip(articles, errors, strict=True):
            article.processed_at = now
            article.status = Article.Status.FAILED if error else Article.Status.PROCESSED
            article.processing_error = error or ""
        Article.objects.bulk_update(articles, PROCESSED_FIELDS)
    failed = sum(1 for e in errors if e)
    return {"processed": len(articles) - failed, "failed": failed}
