"""What the reader's pages list, each in a fixed number of queries whatever the list's length."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from articles.models import Article, Topic
from pipeline.search.recommending import recommend
from pipeline.search.stories import collapse_stories

FOR_YOU_SIZE = 20
LATEST_SIZE = 30


@dataclass
class ForYou:
    strategy: str  # "personal" or "cold_start" (pipeline.search.recommending)
    articles: list[Article]


def _with_feed_and_topic(queryset: QuerySet[Article]) -> QuerySet[Article]:
    # The list shows the feed's title and the topic's name: joined here, not one query per row.
    return queryset.select_related("feed", "topic").defer("content", "embedding")


def for_you(user_id: int, k: int = FOR_YOU_SIZE) -> ForYou:
    """The user's recommendations as articles, in the recommender's order."""
    found = recommend(user_id, k)
    rows = _with_feed_and_topic(Article.objects.all()).in_bulk([item.article_id for item in found.items])
    articles = [rows[item.article_id] for item in found.items if item.article_id in rows]
    return ForYou(found.strategy, articles)


def _story_size() -> Subquery:
    """How many articles tell the row's story (every feed, not only the rows the list kept)."""
    sizes = (
        Article.objects.filter(story_id=OuterRef("story_id"))
        .order_by()
        .values("story_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Subquery(sizes, output_field=IntegerField())


def latest(topic: Topic | None, limit: int = LATEST_SIZE) -> list[Article]:
    """The newest processed articles (of one topic), one per story, each with `more_sources`."""
    articles = Article.objects.filter(status=Article.Status.PROCESSED)
    if topic is not None:
        articles = articles.filter(topic=topic)
    collapsed = collapse_stories(articles).annotate(more_sources=Coalesce(_story_size(), 1) - 1)
    return list(_with_feed_and_topic(collapsed).order_by("-published_at", "-id")[:limit])


def story_sources(article: Article) -> list[Article]:
    """The other articles of the article's story, oldest first (other feeds telling the same news)."""
    if article.story_id is None:
        return []
    others = Article.objects.filter(story_id=article.story_id).exclude(pk=article.pk)
    return list(_with_feed_and_topic(others).order_by("published_at", "id"))
