"""Baselines a practitioner would try, and the metrics every method is scored with.

Every baseline sees exactly what the recommender sees: every reader's interactions with their times,
the articles' publication times, embeddings and pipeline topics. None sees the simulator's sub-topics,
half-lives or held-out reads. Each returns up to K article positions, leaving out what the reader has
seen (read, liked or dismissed).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

K = 10
POPULAR_WINDOW_HOURS = 24.0
# Recency weighting of the history's mean embedding: an interaction counts half after a week.
MEAN_EMBEDDING_HALF_LIFE_HOURS = 168.0
TOPICS_KEPT = 2  # "the user's most-read topics"


def _top(order: np.ndarray, seen: set[int], k: int = K) -> list[int]:
    out = []
    for i in order:
        if int(i) not in seen:
            out.append(int(i))
            if len(out) == k:
                break
    return out


def most_recent(hours_ago: np.ndarray, seen: set[int]) -> list[int]:
    return _top(np.argsort(hours_ago, kind="stable"), seen)


def popular_order(hours_ago: np.ndarray, events: list[tuple[int, str, float]]) -> np.ndarray:
    """Articles by positive interactions of all readers in the last 24 h; ties to the newest."""
    counts = np.zeros(len(hours_ago))
    for article, kind, at in events:
        if kind != "dismiss" and at <= POPULAR_WINDOW_HOURS:
            counts[article] += 1
    return np.lexsort((hours_ago, -counts))


def most_popular_24h(order: np.ndarray, seen: set[int]) -> list[int]:
    return _top(order, seen)


def newest_in_top_topics(
    topics: np.ndarray, hours_ago: np.ndarray, history: list[tuple[int, str, float]], seen: set[int]
) -> list[int]:
    """The newest articles of the (pipeline) topics the reader read most, interleaved by their share."""
    counts = Counter(int(topics[a]) for a, kind, _ in history if kind != "dismiss")
    if not counts:
        return most_recent(hours_ago, seen)
    kept = [t for t, _ in counts.most_common(TOPICS_KEPT)]
    total = sum(counts[t] for t in kept)
    queues = {
        t: [i for i in np.argsort(hours_ago, kind="stable") if topics[i] == t and int(i) not in seen] for t in kept
    }
    out: list[int] = []
    taken = Counter()
    while len(out) < K and any(queues.values()):
        # The topic furthest below its share of the page goes next.
        t = min((t for t in kept if queues[t]), key=lambda t: (taken[t] + 1) / (counts[t] / total))
        out.append(int(queues[t].pop(0)))
        taken[t] += 1
    return out


def mean_embedding_neighbours(vectors: np.ndarray, history: list[tuple[int, str, float]], seen: set[int]) -> list[int]:
    """Nearest neighbours (cosine) of the recency-weighted mean embedding of the reader's positives."""
    positives = [(a, at) for a, kind, at in history if kind != "dismiss"]
    if not positives:
        return []
    weights = np.array([0.5 ** (at / MEAN_EMBEDDING_HALF_LIFE_HOURS) for _, at in positives])
    mean = (weights[:, None] * vectors[[a for a, _ in positives]]).sum(axis=0)
    return _top(np.argsort(-(vectors @ mean), kind="stable"), seen)


def ndcg(ranked: list[int], relevant: set[int], k: int = K) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall(ranked: list[int], relevant: set[int], k: int = K) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def intra_list_diversity(ranked: list[int], vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance of the page (0: ten copies of one article)."""
    if len(ranked) < 2:
        return 0.0
    page = vectors[ranked]
    similarity = page @ page.T
    n = len(ranked)
    return float((1 - similarity[np.triu_indices(n, 1)]).mean())
