"""Process pending articles: one embedding per article, and its topic derived from that embedding.

No model runs inside a database transaction. A batch goes through three steps:

1. **Claim** (one short UPDATE): pending rows of the batch that no live run holds are marked with
   this run's claim (the Dramatiq message id, so a re-delivered message re-claims its own rows at
   once; a claim older than CLAIM_TTL belongs to a run that died and is taken over).
2. **Embed and classify** with no transaction open: row locks are not held for the minutes a big
   batch can take, and a slow model never blocks a person's label or a sweep.
3. **Write** (one UPDATE … FROM unnest): only rows still pending *and still claimed by this run*
   change, and the row count says which. A message delivered twice, or two sweeps that sent the same
   article, change nothing twice; a label a person gave meanwhile is kept (the topic columns are
   decided against the row as it is at write time).

`processed_at` is stamped by Postgres in that write statement, which commits within WRITE_TIMEOUT,
so rows become visible in processed_at order within that bound: the vector index's catch-up overlap
(VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS) only has to cover it, and every process, on every machine,
stamps with the one clock Postgres has.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from django.conf import settings
from django.db import connection, transaction

from articles.models import Article
from pipeline.understanding import embedding
from pipeline.understanding.topic_models import topic_model_in_force

logger = logging.getLogger(__name__)

# Longer than process_articles' time limit (10 minutes): a claim this old belongs to a run that died.
CLAIM_TTL = timedelta(minutes=15)
# The write step is one statement on at most a batch of rows; bounded so that the catch-up overlap of
# the vector index can be bounded too (a lock wait or a stall past this fails the message, which retries).
LOCK_TIMEOUT = "5s"
WRITE_TIMEOUT = "10s"

_TABLE = Article._meta.db_table
_CLAIM = f"""
UPDATE {_TABLE} SET claimed_by = %(claim)s, claimed_at = statement_timestamp()
WHERE id = ANY(%(ids)s) AND status = %(pending)s
  AND (claimed_by = '' OR claimed_by = %(claim)s OR claimed_at < statement_timestamp() - %(ttl)s::interval)
RETURNING id, title, summary, content, body
"""
# Topic columns: a person's label (classified_by human) outranks any classifier, and an article that
# got no prediction (no topics, or its embedding failed) keeps what it had.
_WRITE = f"""
UPDATE {_TABLE} AS a SET
    status = v.status,
    processing_error = v.error,
    processed_at = statement_timestamp(),
    embedding = COALESCE(v.embedding, a.embedding),
    topic_id = CASE WHEN v.classified_by = '' OR a.classified_by = %(human)s THEN a.topic_id ELSE v.topic_id END,
    topic_confidence = CASE WHEN v.classified_by = '' OR a.classified_by = %(human)s
                            THEN a.topic_confidence ELSE v.confidence END,
    classified_by = CASE WHEN v.classified_by = '' OR a.classified_by = %(human)s
                         THEN a.classified_by ELSE v.classified_by END,
    claimed_by = ''
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(errors)s::text[], %(embeddings)s::bytea[],
            %(topics)s::bigint[], %(confidences)s::float8[], %(classified_by)s::text[])
    AS v(id, status, error, embedding, topic_id, confidence, classified_by)
WHERE a.id = v.id AND a.status = %(pending)s AND a.claimed_by = %(claim)s
RETURNING a.id, a.status
"""


@dataclass
class _Claimed:
    id: int
    text: str


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


def claim_articles(article_ids: Sequence[int], claim: str) -> list[_Claimed]:
    """Step 1: claim those of `article_ids` that are pending and not held by a live run (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM,
            {
                "claim": claim,
                "ids": [int(i) for i in article_ids],
                "pending": Article.Status.PENDING,
                "ttl": f"{CLAIM_TTL.total_seconds():.0f} seconds",
            },
        )
        rows = sorted(cursor.fetchall())
    # The page's extracted body, when there is one, stands in for the feed's content: it is the article
    # the feed's content excerpts (settings.ARTICLE_BODY_FOR_MODEL, chosen by benchmarks/bench_full_text.py).
    use_body = settings.ARTICLE_BODY_FOR_MODEL
    return [
        _Claimed(article_id, embedding.article_text(title, summary, body if use_body and body else content))
        for article_id, title, summary, content, body in rows
    ]


def process_articles(article_ids: Sequence[int], *, claim: str | None = None) -> dict[str, int]:
    """Embed and classify those of `article_ids` that are still pending; returns how many this run
    stored as processed and as failed (rows another run claimed or finished are left alone).

    `claim` identifies this run (the actor passes its message id); a direct call gets a fresh one.
    """
    claim = claim or uuid.uuid4().hex
    # Called from the actor, outside any transaction: the claim commits at once, and step 2 below then
    # holds no row lock. (Inside a caller's transaction, a test's, the claim's locks last until it ends.)
    claimed = claim_articles(article_ids, claim)
    if not claimed:
        return {"processed": 0, "failed": 0}
    # Step 2: the model, with no transaction open.
    errors: list[str | None] = ["no text to embed (empty title and summary)"] * len(claimed)
    usable = [i for i, item in enumerate(claimed) if item.text.strip()]
    vectors: np.ndarray | None = None
    if usable:
        vectors, usable_errors = _embed_isolating_failures([claimed[i].text for i in usable])
        for i, error in zip(usable, usable_errors, strict=True):
            errors[i] = error
    # The topic comes from the embedding just computed: no second model pass.
    in_force = topic_model_in_force()
    predicted: list[int] = []
    confidences: list[float] = []
    if vectors is not None and in_force.model is not None:
        topic_ids, probabilities = in_force.model.predict(vectors)
        predicted, confidences = [int(str(t)) for t in topic_ids], [float(p) for p in probabilities]

    embeddings: list[bytes | None] = [None] * len(claimed)
    topics: list[int | None] = [None] * len(claimed)
    topic_confidences: list[float | None] = [None] * len(claimed)
    classified_by = [""] * len(claimed)
    for position, i in enumerate(usable):
        if errors[i] is not None:
            continue
        assert vectors is not None
        embeddings[i] = embedding.vector_to_bytes(vectors[position])
        if predicted:
            topics[i], topic_confidences[i] = predicted[position], confidences[position]
            classified_by[i] = in_force.classified_by
    statuses = [Article.Status.FAILED if error else Article.Status.PROCESSED for error in errors]

    # Step 3: one conditional write of the rows this run still holds.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
            [LOCK_TIMEOUT, WRITE_TIMEOUT],
        )
        cursor.execute(
            _WRITE,
            {
                "ids": [item.id for item in claimed],
                "statuses": statuses,
                "errors": [error or "" for error in errors],
                "embeddings": embeddings,
                "topics": topics,
                "confidences": topic_confidences,
                "classified_by": classified_by,
                "human": Article.ClassifiedBy.HUMAN,
                "pending": Article.Status.PENDING,
                "claim": claim,
            },
        )
        written = cursor.fetchall()
    if len(written) < len(claimed):
        logger.info("%d of %d claimed articles were finished by another run", len(claimed) - len(written), len(claimed))
    failed = sum(1 for _, status in written if status == Article.Status.FAILED)
    return {"processed": len(written) - failed, "failed": failed}
