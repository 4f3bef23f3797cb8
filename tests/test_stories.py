"""Stories: near-duplicates across feeds share a story id (the id of the story's first article)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.search import stories
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_to_bytes

DEMO = Path(__file__).resolve().parent.parent / "articles" / "demo"


def basis(n: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((EMBEDDING_DIM, n)))
    return q.T.astype(np.float32)


E = basis(12)


def at_cosine(base: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    return (cosine * base + np.sqrt(1 - cosine**2) * other).astype(np.float32)


@pytest.fixture
def feeds(db) -> list[Feed]:  # type: ignore[no-untyped-def]
    return [Feed.objects.create(url=f"https://example.invalid/{i}.xml", title=f"Feed {i}") for i in range(3)]


def add(feed: Feed, vector: np.ndarray, *, days_ago: float = 0, guid: str | None = None) -> Article:
    return Article.objects.create(
        feed=feed,
        guid=guid or f"g-{Article.objects.count()}",
        title=f"article {Article.objects.count()}",
        status=Article.Status.PROCESSED,
        processed_at=timezone.now(),
        published_at=timezone.now() - timedelta(days=days_ago),
        embedding=vector_to_bytes(vector),
    )


def story_of(article: Article) -> int | None:
    return Article.objects.get(pk=article.pk).story_id


def test_same_story_from_two_feeds_shares_the_first_articles_id(feeds, fresh_vector_index) -> None:
    first = add(feeds[0], E[0])
    second = add(feeds[1], at_cosine(E[0], E[1], 0.85))
    unrelated = add(feeds[2], E[2])
    stories.assign_stories([first.pk, second.pk, unrelated.pk])
    assert story_of(first) == story_of(second) == first.pk
    assert story_of(unrelated) == unrelated.pk


def test_below_the_threshold_or_days_apart_are_different_stories(feeds, fresh_vector_index) -> None:
    base = add(feeds[0], E[0])
    related = add(feeds[1], at_cosine(E[0], E[1], stories.STORY_SIMILARITY - 0.05))
    follow_up = add(feeds[2], at_cosine(E[0], E[2], 0.9), days_ago=stories.STORY_WINDOW.days + 1)
    stories.assign_stories([base.pk, related.pk, follow_up.pk])
    assert len({story_of(base), story_of(related), story_of(follow_up)}) == 3


def test_within_one_feed_only_a_near_copy_joins(feeds, fresh_vector_index) -> None:
    base = add(feeds[0], E[0])
    same_subject = add(feeds[0], at_cosine(E[0], E[1], 0.85))
    copy = add(feeds[0], at_cosine(E[0], E[2], 0.97))
    stories.assign_stories([base.pk, same_subject.pk, copy.pk])
    assert story_of(copy) == story_of(base) == base.pk
    assert story_of(same_subject) == same_subject.pk


def test_assigning_again_changes_nothing(feeds, fresh_vector_index) -> None:
    a = add(feeds[0], E[0])
    b = add(feeds[1], at_cosine(E[0], E[1], 0.85))
    assert stories.assign_stories([a.pk, b.pk]) == {"stories_changed": 2}
    assert stories.assign_stories([a.pk, b.pk]) == {"stories_changed": 0}
    assert stories.assign_stories([b.pk]) == {"stories_changed": 0}
    assert story_of(a) == story_of(b) == a.pk


def test_a_later_article_joins_and_bridges_stories(feeds, fresh_vector_index) -> None:
    # a and b are two stories on their own (cosine 0.6); c, later, is close to both: one story now.
    a = add(feeds[0], E[0])
    b = add(feeds[1], (0.6 * E[0] + 0.8 * E[1]).astype(np.float32))
    stories.assign_stories([a.pk, b.pk])
    assert story_of(a) != story_of(b)
    bridge = E[0] + (0.6 * E[0] + 0.8 * E[1])
    c = add(feeds[2], (bridge / np.linalg.norm(bridge)).astype(np.float32))
    stories.assign_stories([c.pk])
    assert story_of(a) == story_of(b) == story_of(c) == a.pk


def test_an_earlier_article_processed_late_becomes_the_story_id(feeds, fresh_vector_index) -> None:
    early = add(feeds[0], E[0])  # stored first, processed last
    Article.objects.filter(pk=early.pk).update(status=Article.Status.PENDING, embedding=None)
    late = add(feeds[1], at_cosine(E[0], E[1], 0.85))
    stories.assign_stories([late.pk])
    assert story_of(late) == late.pk
    Article.objects.filter(pk=early.pk).update(
        status=Article.Status.PROCESSED, embedding=vector_to_bytes(E[0]), processed_at=timezone.now()
    )
    stories.assign_stories([early.pk])
    assert story_of(early) == story_of(late) == early.pk


def test_articles_list_can_collapse_stories(feeds, fresh_vector_index, api) -> None:
    a = add(feeds[0], E[0])
    b = add(feeds[1], at_cosine(E[0], E[1], 0.85))
    c = add(feeds[2], E[3])
    pending = Article.objects.create(feed=feeds[2], guid="pending", title="not processed yet")
    stories.assign_stories([a.pk, b.pk, c.pk])

    def listed(query: str) -> set[int]:
        response = api.get(f"/api/articles/?{query}")
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    assert listed("") == {a.pk, b.pk, c.pk, pending.pk}
    assert listed("collapse_stories=true") == {a.pk, c.pk, pending.pk}
    # The story's first article is filtered out: the story is still shown, by the one that remains.
    assert listed(f"collapse_stories=true&feed={feeds[1].pk}") == {b.pk}
    assert api.get(f"/api/articles/{b.pk}/").json()["story_id"] == a.pk


@pytest.fixture
def demo_articles(db) -> list[Article]:  # type: ignore[no-untyped-def]
    """The demo feeds' entries stored as pending articles, one Feed per demo feed."""
    from pipeline.feeds.parsing import parse_feed

    articles = []
    for spec in json.loads((DEMO / "feeds.json").read_text()):
        feed = Feed.objects.create(url=f"https://demo.invalid/{spec['file']}", title=spec["title"])
        parsed = parse_feed((DEMO / "feeds" / spec["file"]).read_bytes(), base_url=feed.url)
        for entry in parsed.entries:
            articles.append(
                Article.objects.create(
                    feed=feed,
                    guid=entry.guid,
                    title=entry.title,
                    summary=entry.summary,
                    content=entry.content,
                    published_at=entry.published_at,
                )
            )
    return articles


def test_the_demo_has_exactly_its_two_cross_feed_stories(demo_articles, fresh_vector_index) -> None:
    """With the real model, through the real processing actor: the threshold groups only those pairs."""
    from pipeline.actors import process_articles

    ids = [a.pk for a in demo_articles]
    for start in range(0, len(ids), 16):
        process_articles(ids[start : start + 16])
    grouped: dict[int, list[str]] = {}
    for article in Article.objects.filter(pk__in=ids).select_related("feed"):
        assert article.status == Article.Status.PROCESSED
        grouped.setdefault(article.story_id, []).append(article.feed.title)
    multi = sorted(sorted(feeds) for feeds in grouped.values() if len(feeds) > 1)
    assert multi == [["Markets", "Tech Wire"], ["Markets", "World Politics"]]
    assert len(grouped) == len(ids) - 2
