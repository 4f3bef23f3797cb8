"""Similar articles and semantic search: the vector index, re-ranked, turned back into articles.

Shared by the API (articles/api/similarity.py) and the `similar` / `search` commands.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["NotEmbedded", "ScoredArticle", "check_k", "check_query", "search_articles", "similar_articles", "summary"]

from articles.models import Article
from pipeline.search.limits import check_k
from pipeline.search.neighbours import find_similar
from pipeline.search.vector_index import get_index
from pipeline.understanding.embedding import embed_texts, vector_from_bytes
from pipeline.understanding.topic_models import active_topic_model

# FAISS returns this many nearest for `find_similar` to re-rank (it keeps its own best 50 after
# dropping duplicates): the tuned re-ranking needs more than k to choose from.
SIMILAR_POOL = 100
MAX_QUERY_CHARS = 500


class ScoredArticle(NamedTuple):
    article: Article
    score: float  # cosine similarity to the query article or text


class NotEmbedded(Exception):
    """The article has no embedding yet (pending) or could not get one (failed)."""


def check_query(raw: object) -> str:
    """The search text, stripped; ValueError when empty or longer than MAX_QUERY_CHARS."""
    text = str(raw or "").strip()
    if not text:
        raise ValueError("q is required: the text to search for")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"q is {len(text)} characters; at most {MAX_QUERY_CHARS} are allowed")
    return text


# Columns no answer shows (the API's summary(), the reader's result lists): an embedding is 1.5 kB and a
# fetched page's text tens of kB, read and decoded for each of the k articles of every answer otherwise.
_NOT_SHOWN = ("embedding", "content", "body", "processing_error", "page_error")


def _articles_in_order(hits: list[tuple[int, float]]) -> list[ScoredArticle]:
    # order_by(): the hits give the order; the model's default would have Postgres sort them first.
    articles = Article.objects.select_related("feed", "topic").defer(*_NOT_SHOWN).order_by()
    found = articles.in_bulk([article_id for article_id, _ in hits])
    return [ScoredArticle(found[i], score) for i, score in hits if i in found]


def similar_articles(article: Article, k: int = 10) -> list[ScoredArticle]:
    """The `k` articles most like `article`, leaving out itself, its story and near-duplicates.

    Raises NotEmbedded when the article has no embedding to compare.
    """
    if article.status != Article.Status.PROCESSED or article.embedding is None:
        reason = article.processing_error or "it has not been processed yet"
        raise NotEmbedded(f"article {article.pk} has no embedding ({article.status}: {reason})")
    query = vector_from_bytes(article.embedding)
    exclude = {article.pk}
    if article.story_id is not None:
        exclude |= set(Article.objects.filter(story_id=article.story_id).values_list("id", flat=True))
    index = get_index()
    [pool] = index.search(query, SIMILAR_POOL, exclude_ids=exclude)
    if not pool:
        return []
    ids = [article_id for article_id, _ in pool]
    neighbours = find_similar(
        query, index.vectors_for(ids), ids, k, exclude_ids=exclude, topic_model=active_topic_model()
    )
    return _articles_in_order([(int(n.id), n.similarity) for n in neighbours])


def search_articles(text: str, k: int = 10) -> list[ScoredArticle]:
    """The `k` processed articles nearest in meaning to `text` (embedded with the article model)."""
    [query] = embed_texts([text])
    [hits] = get_index().search(query, k)
    return _articles_in_order(hits)


def summary(scored: ScoredArticle) -> dict[str, object]:
    """The short form of an article in similar / search answers."""
    article = scored.article
    return {
        "id": article.pk,
        "title": article.title,
        "url": article.url,
        "feed": article.feed_id,
        "feed_title": article.feed.title,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "topic": article.topic.name if article.topic else None,
        "story_id": article.story_id,
        "score": round(scored.score, 4),
    }
