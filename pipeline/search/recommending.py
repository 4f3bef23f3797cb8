"""Personal recommendations from a user's reads, likes and dismissals.

A user's history becomes a profile: one interest vector per topic they read (the weighted mean of
those articles' stored embeddings; likes weigh more than reads, and every interaction fades with
age) and the vectors of what they dismissed. Candidates are the articles nearest to each interest in
the vector index plus the freshest articles; each is scored by its similarity to the closest
interest, a freshness bonus and a penalty for resembling something dismissed. The page is then
picked greedily with maximal marginal relevance, never showing two articles of one story.

A user with no usable history gets the freshest articles taken in turn from each topic.
Nothing here runs the embedding model: every vector is one processing already stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from django.db import connection
from django.utils import timezone

from articles.models import Article
from pipeline.search.limits import MAX_K
from pipeline.search.neighbours import DUPLICATE_THRESHOLD
from pipeline.search.profiles import (
    Profile,
    build_profile,
    empty_vectors,
    load_history,
)
from pipeline.search.tiered_index import TieredIndex
from pipeline.search.vector_index import ArticleIndex, get_index
from pipeline.understanding.embedding import vector_from_bytes

# A minor interest's candidates lose SHARE_WEIGHT * ln(its share / the main interest's share):
# at 0.1 an interest a quarter the size of the main one starts 0.14 cosine behind.
SHARE_WEIGHT = 0.1
# Candidates drawn from the index per interest vector and per recent positive article.
CANDIDATES_PER_QUERY = 100
# The freshest articles are always candidates, so a new article can win on freshness.
FRESH_POOL = 300
# Freshness bonus FRESHNESS_WEIGHT * 0.5 ** (age / FRESHNESS_HALF_LIFE_HOURS). Relevance spans about
# 0.1 (another topic) to 0.5 (the user's topic), so a fresh article of another topic still loses to a
# two-day-old one of theirs. Chosen on the simulation of benchmarks/bench_recommendations.py (see
# docs/quality.md): 0.15 → 0.3 lifts its nDCG@10 by a third and costs 2 points of on-interest share.
FRESHNESS_WEIGHT = 0.3
FRESHNESS_HALF_LIFE_HOURS = 48.0
# A dismissal pushes away what resembles the dismissed article more than articles of one topic
# usually resemble each other (all-MiniLM-L6-v2 on BBC news: median cosine 0.23 within a topic,
# 90th percentile 0.41): DISMISS_WEIGHT * decay * (cosine - DISMISS_FLOOR) / (1 - DISMISS_FLOOR).
DISMISS_WEIGHT = 0.5
DISMISS_FLOOR = 0.4
# Maximal marginal relevance: score weight against similarity to what the page already holds
# (1.0 would be no diversity; 0.6 starts to fill the page with the user's minor interests).
MMR_LAMBDA = 0.8
# Only this many of the best-scored candidates are considered for the page.
RERANK_POOL = 200

PERSONAL = "personal"
COLD_START = "cold_start"


@dataclass(frozen=True)
class Recommendation:
    article_id: int
    score: float
    reason: str  # "interest" (near the user's reading) or "fresh" (cold start)


@dataclass
class RecommendationList:
    strategy: str  # PERSONAL or COLD_START
    items: list[Recommendation] = field(default_factory=list)


@dataclass
class _Candidates:
    ids: np.ndarray
    vectors: np.ndarray
    ages_hours: np.ndarray
    stories: np.ndarray  # story id, or the article's own id when it has none yet
    topics: list[int | None]


def _fresh_ids(limit: int, exclude: set[int], *, now: datetime) -> list[int]:
    """The most recently published processed articles (publication times in the future are not trusted)."""
    query = (
        Article.objects.filter(status=Article.Status.PROCESSED, embedding__isnull=False, published_at__lte=now)
        .order_by("-published_at", "-id")
        .values_list("id", flat=True)
    )
    return [i for i in query[: limit + len(exclude)] if i not in exclude][:limit]


_CANDIDATES_SQL = f"""
SELECT id, published_at, fetched_at, story_id, topic_id FROM {Article._meta.db_table}
WHERE id = ANY(%s) AND status = '{Article.Status.PROCESSED}' AND embedding IS NOT NULL ORDER BY id
"""


def _vectors_of(ids: list[int], index: ArticleIndex | TieredIndex | None) -> np.ndarray:
    """Embeddings of `ids` in order: from the vector index when it holds them all (sparing Postgres
    1.5 kB a row), else from Postgres."""
    if index is not None:
        try:
            return index.vectors_for(ids)
        except KeyError:  # processed since the index last caught up, or just forgotten
            pass
    rows = Article.objects.filter(pk__in=ids).values_list("id", "embedding")
    stored = {article_id: data for article_id, data in rows if data is not None}
    return np.stack([vector_from_bytes(stored[i]) for i in ids]) if ids else empty_vectors()


def _load_candidates(
    ids: Iterable[int], profile: Profile, *, now: datetime, index: ArticleIndex | TieredIndex | None = None
) -> _Candidates:
    """Vectors and metadata of candidate articles still processed, without what the user has seen."""
    # A story's id is its first article's id, so a seen article may name a story too.
    seen_stories = profile.seen_stories | profile.seen_ids
    wanted = [i for i in ids if i not in profile.seen_ids]
    with connection.cursor() as cursor:
        # One array parameter: an IN list of a thousand ids costs more to bind than to run.
        cursor.execute(_CANDIDATES_SQL, [wanted])
        rows = [row for row in cursor.fetchall() if row[3] is None or row[3] not in seen_stories]
    if not rows:
        return _Candidates(np.empty(0, np.int64), empty_vectors(), np.empty(0), np.empty(0, np.int64), [])
    vectors = _vectors_of([r[0] for r in rows], index)
    ages = np.array(
        [
            max((now - min(published or fetched, now)).total_seconds(), 0.0) / 3600
            for _, published, fetched, _, _ in rows
        ]
    )
    candidates = _Candidates(
        ids=np.array([r[0] for r in rows], dtype=np.int64),
        vectors=vectors,
        ages_hours=ages,
        stories=np.array([r[3] if r[3] is not None else r[0] for r in rows], dtype=np.int64),
        topics=[r[4] for r in rows],
    )
    # The same story from another feed, not yet grouped: as good as seen.
    if len(profile.positives):
        keep = (vectors @ profile.positives.T).max(axis=1) < DUPLICATE_THRESHOLD
        candidates = _select(candidates, np.flatnonzero(keep))
    return candidates


def _select(candidates: _Candidates, positions: np.ndarray) -> _Candidates:
    return _Candidates(
        ids=candidates.ids[positions],
        vectors=candidates.vectors[positions],
        ages_hours=candidates.ages_hours[positions],
        stories=candidates.stories[positions],
        topics=[candidates.topics[i] for i in positions],
    )


def freshness(ages_hours: np.ndarray) -> np.ndarray:
    return 0.5 ** (np.asarray(ages_hours) / FRESHNESS_HALF_LIFE_HOURS)


def dismissal_penalty(vectors: np.ndarray, profile: Profile) -> np.ndarray:
    if len(profile.dismissed) == 0 or len(vectors) == 0:
        return np.zeros(len(vectors))
    closeness = np.clip((vectors @ profile.dismissed.T - DISMISS_FLOOR) / (1 - DISMISS_FLOOR), 0, None)
    return DISMISS_WEIGHT * (closeness * profile.dismissed_weights).max(axis=1)


def score_candidates(candidates: _Candidates, profile: Profile) -> np.ndarray:
    """Similarity to the closest interest (minor interests handicapped) + freshness − dismissals."""
    if len(candidates.ids) == 0:
        return np.empty(0)
    handicap = SHARE_WEIGHT * np.log(profile.interest_shares / profile.interest_shares.max())
    relevance = (candidates.vectors @ profile.interests.T + handicap).max(axis=1)
    return (
        relevance + FRESHNESS_WEIGHT * freshness(candidates.ages_hours) - dismissal_penalty(candidates.vectors, profile)
    )


def diversify(candidates: _Candidates, scores: np.ndarray, k: int, *, mmr_lambda: float | None = None) -> list[int]:
    """Positions of up to `k` candidates by maximal marginal relevance; one per story, no near-duplicates."""
    mmr_lambda = MMR_LAMBDA if mmr_lambda is None else mmr_lambda
    pool = np.argsort(-scores, kind="stable")[:RERANK_POOL]
    vectors = candidates.vectors[pool]
    max_similarity = np.full(len(pool), -1.0)
    chosen: list[int] = []
    stories: set[int] = set()
    available = np.ones(len(pool), dtype=bool)
    while len(chosen) < k and available.any():
        redundancy = np.where(max_similarity > -1, max_similarity, 0.0)
        value = np.where(available, mmr_lambda * scores[pool] - (1 - mmr_lambda) * redundancy, -np.inf)
        best = int(np.argmax(value))
        available[best] = False
        story = int(candidates.stories[pool[best]])
        if story in stories or max_similarity[best] >= DUPLICATE_THRESHOLD:
            continue
        chosen.append(int(pool[best]))
        stories.add(story)
        max_similarity = np.maximum(max_similarity, vectors @ vectors[best])
    return chosen


def cold_start(profile: Profile, k: int, *, now: datetime) -> RecommendationList:
    """The freshest articles, taken in turn from each topic (the freshest topic first), one per story."""
    candidates = _load_candidates(_fresh_ids(FRESH_POOL, profile.seen_ids, now=now), profile, now=now)
    scores = freshness(candidates.ages_hours) - dismissal_penalty(candidates.vectors, profile)
    by_topic: dict[int | None, list[int]] = {}
    for position in np.argsort(-scores, kind="stable"):
        by_topic.setdefault(candidates.topics[position], []).append(int(position))
    queues = list(by_topic.values())
    chosen: list[int] = []
    stories: set[int] = set()
    while len(chosen) < k and any(queues):
        for queue in queues:
            while queue:
                position = queue.pop(0)
                story = int(candidates.stories[position])
                duplicate = chosen and float((candidates.vectors[chosen] @ candidates.vectors[position]).max()) >= (
                    DUPLICATE_THRESHOLD
                )
                if story not in stories and not duplicate:
                    chosen.append(position)
                    stories.add(story)
                    break
            if len(chosen) == k:
                break
    return RecommendationList(
        COLD_START, [Recommendation(int(candidates.ids[p]), round(float(scores[p]), 4), "fresh") for p in chosen]
    )


def recommend(user_id: int, k: int = 10, *, now: datetime | None = None) -> RecommendationList:
    """Up to `k` articles for the user, best first (see the module docstring)."""

    if not 1 <= k <= MAX_K:
        raise ValueError(f"k must be between 1 and {MAX_K}")
    now = now or timezone.now()
    profile = build_profile(load_history(user_id, now=now))
    if profile.is_empty:
        return cold_start(profile, k, now=now)

    index = get_index()
    queries = np.concatenate([profile.interests, profile.recent_positives])
    found = index.search(queries, CANDIDATES_PER_QUERY, exclude_ids=profile.seen_ids)
    ids = {article_id for hits in found for article_id, _ in hits}
    ids.update(_fresh_ids(FRESH_POOL, profile.seen_ids, now=now))
    candidates = _load_candidates(ids, profile, now=now, index=index)
    scores = score_candidates(candidates, profile)
    chosen = diversify(candidates, scores, k)
    return RecommendationList(
        PERSONAL, [Recommendation(int(candidates.ids[p]), round(float(scores[p]), 4), "interest") for p in chosen]
    )
