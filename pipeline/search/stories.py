"""Stories: the same news from several feeds, grouped under one id so lists can collapse them.

An article's `story_id` is the id of its story's first (lowest-id) article; an article that matches
no other is a story of its own (`story_id` = its id). Two articles are the same story when their
embeddings are at least `STORY_SIMILARITY` apart in cosine, they come from different feeds (or are a
near-copy from the same feed), and they were published within `STORY_WINDOW` of each other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
from django.db import connection, transaction
from django.db.models import Min, Q, QuerySet, Subquery

from articles.models import Article
from pipeline.search.neighbours import DUPLICATE_THRESHOLD
from pipeline.search.vector_index import get_index
from pipeline.understanding.embedding import vector_from_bytes

# With all-MiniLM-L6-v2 the same event told by two outlets sits at 0.8-0.9 cosine: the demo's two
# cross-feed stories are at 0.83 and 0.85, its next cross-feed pair at 0.34. On the BBC set (one outlet),
# pairs at 0.75-0.80 are mostly follow-ups on one subject (another day, another event), which should
# stay apart; above 0.80 they are more often the same event.
STORY_SIMILARITY = 0.80
# Beyond this gap in publication time, a close match is a follow-up or an anniversary, not the same story.
STORY_WINDOW = timedelta(days=3)
# Neighbours looked at per article: a story rarely spans more feeds than this.
CANDIDATES = 20

_LOCK_KEY = 0x5_7031E5  # pg_advisory_xact_lock key for story assignment


def _when(published_at: datetime | None, fetched_at: datetime) -> datetime:
    return published_at or fetched_at


def is_same_story(similarity: float, feed_a: int, feed_b: int, when_a: datetime, when_b: datetime) -> bool:
    """Whether two articles tell the same story, by their cosine, feeds and publication times."""
    if abs(when_a - when_b) > STORY_WINDOW:
        return False
    if feed_a == feed_b:
        return similarity >= DUPLICATE_THRESHOLD  # a feed re-publishing its own article
    return similarity >= STORY_SIMILARITY


class _Groups:
    """Union-find over article ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> Iterable[list[int]]:
        members: dict[int, list[int]] = {}
        for x in list(self.parent):
            members.setdefault(self.find(x), []).append(x)
        return members.values()


def assign_stories(article_ids: Sequence[int]) -> dict[str, int]:
    """Give each of these processed articles a story id, merging stories they connect; idempotent.

    Runs after the articles' processing committed. Assignments are serialised by an advisory lock,
    so of two matching articles processed at the same time, the second to take the lock sees the
    first; returns how many rows changed.
    """
    articles = list(
        Article.objects.filter(pk__in=list(article_ids), status=Article.Status.PROCESSED, embedding__isnull=False).only(
            "id", "feed_id", "published_at", "fetched_at", "embedding"
        )
    )
    if not articles:
        return {"stories_changed": 0}
    index = get_index()
    index.refresh(force=True)  # the articles just processed, and any committed by other workers
    vectors = np.stack([vector_from_bytes(a.embedding) for a in articles if a.embedding is not None])
    results = index.search(vectors, CANDIDATES + 1)
    close = {
        a.pk: [(other, score) for other, score in hits if other != a.pk and score >= STORY_SIMILARITY]
        for a, hits in zip(articles, results)
    }

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        involved = {a.pk for a in articles} | {other for hits in close.values() for other, _ in hits}
        # Read under the lock: another worker may have just merged some of these stories.
        rows = {
            row["id"]: row
            for row in Article.objects.filter(pk__in=involved).values(
                "id", "feed_id", "published_at", "fetched_at", "story_id"
            )
        }
        groups = _Groups()
        for article in articles:
            me = rows.get(article.pk)
            if me is None:
                continue
            groups.find(me["id"])
            for other_id, score in close[article.pk]:
                other = rows.get(other_id)
                if other is not None and is_same_story(
                    score,
                    me["feed_id"],
                    other["feed_id"],
                    _when(me["published_at"], me["fetched_at"]),
                    _when(other["published_at"], other["fetched_at"]),
                ):
                    groups.join(me["id"], other_id)
        changed = 0
        for members in groups.groups():
            old_stories: set[int] = {story_id for m in members if (story_id := rows[m]["story_id"]) is not None}
            story = min([*members, *old_stories])
            # Whole stories move together: members, and every article already in a story being merged.
            changed += (
                Article.objects.filter(Q(pk__in=members) | Q(story_id__in=old_stories))
                .exclude(story_id=story)
                .update(story_id=story)
            )
    return {"stories_changed": changed}


def collapse_stories(queryset: QuerySet[Article]) -> QuerySet[Article]:
    """One article per story among `queryset`: the story's first article there (lowest id).

    Computed over the queryset as filtered, so a story whose first article is filtered out is still
    shown by its first article that remains. Articles without a story id (not processed) stay.
    """
    firsts = (
        queryset.order_by().filter(story_id__isnull=False).values("story_id").annotate(first=Min("id")).values("first")
    )
    return queryset.filter(Q(story_id__isnull=True) | Q(pk__in=Subquery(firsts)))
