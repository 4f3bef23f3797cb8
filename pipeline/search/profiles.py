"""A user's profile for recommendations: interest vectors from what they read and liked, and what they
dismissed, built from their interactions and the embeddings processing already stored (no model pass).

One interest vector per topic they read: the weighted mean of those articles' embeddings, likes
weighing more than reads, every interaction fading with age.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from articles.models import Interaction
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_from_bytes

# The most recent interactions that make the profile: older ones have faded anyway.
HISTORY_LIMIT = 500
# How much each kind of interaction says about the user (dismissals push away, see DISMISS_WEIGHT).
KIND_WEIGHTS: dict[str, float] = {Interaction.Kind.READ: 1.0, Interaction.Kind.LIKE: 3.0}
# An interaction counts half after this many days: interests drift, news habits less so.
INTEREST_HALF_LIFE_DAYS = 14.0
# Interests kept per user (the topics they read most, after decay).
MAX_INTERESTS = 5

# Positive articles used as queries of their own (the newest first).
RECENT_POSITIVE_QUERIES = 5


@dataclass(frozen=True)
class HistoryItem:
    article_id: int
    kind: str
    weight: float  # kind weight × time decay
    topic_id: int | None
    story_id: int | None
    vector: np.ndarray | None


@dataclass
class Profile:
    interests: np.ndarray  # (n, dim) unit vectors
    interest_shares: np.ndarray  # (n,) summing to 1
    recent_positives: np.ndarray  # (m, dim)
    positives: np.ndarray  # every positive article's vector, for near-duplicate filtering
    dismissed: np.ndarray  # (d, dim)
    dismissed_weights: np.ndarray  # (d,) decay of each dismissal, 0..1
    seen_ids: set[int]
    seen_stories: set[int]

    @property
    def is_empty(self) -> bool:
        return len(self.interests) == 0


def decay(age_seconds: float, half_life_seconds: float) -> float:
    return 0.5 ** (max(age_seconds, 0.0) / half_life_seconds)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)


def empty_vectors() -> np.ndarray:
    return np.empty((0, EMBEDDING_DIM), dtype=np.float32)


def load_history(user_id: int, *, now: datetime) -> list[HistoryItem]:
    """The user's most recent interactions with their articles' vectors: one query."""
    rows = (
        Interaction.objects.filter(user_id=user_id)
        .order_by("-created_at", "-id")
        .values_list("article_id", "kind", "created_at", "article__topic_id", "article__story_id", "article__embedding")
    )[:HISTORY_LIMIT]
    half_life = INTEREST_HALF_LIFE_DAYS * 86400
    items = []
    for article_id, kind, created_at, topic_id, story_id, data in rows:
        faded = decay((now - created_at).total_seconds(), half_life)
        weight = KIND_WEIGHTS.get(kind, 1.0) * faded if kind != Interaction.Kind.DISMISS else faded
        vector = vector_from_bytes(data) if data is not None else None
        items.append(HistoryItem(article_id, kind, weight, topic_id, story_id, vector))
    return items


def _stack(items: Iterable[HistoryItem]) -> np.ndarray:
    """The items' vectors as rows (items without a vector are left out by the callers already)."""
    vectors = [item.vector for item in items if item.vector is not None]
    return np.stack(vectors) if vectors else empty_vectors()


def build_profile(history: Sequence[HistoryItem]) -> Profile:
    """Interest vectors per topic (weighted mean of the positives), dismissed vectors, what was seen."""
    positives = [h for h in history if h.kind != Interaction.Kind.DISMISS and h.vector is not None]
    # An article both read and liked counts once, at its strongest.
    strongest: dict[int, HistoryItem] = {}
    for item in positives:
        if item.article_id not in strongest or item.weight > strongest[item.article_id].weight:
            strongest[item.article_id] = item
    groups: dict[int | None, list[HistoryItem]] = {}
    for item in strongest.values():
        groups.setdefault(item.topic_id, []).append(item)
    interests, masses = [], []
    for items in groups.values():
        weights = np.array([i.weight for i in items], dtype=np.float32)
        mean = (weights[:, None] * _stack(items)).sum(axis=0)
        interests.append(mean)
        masses.append(float(weights.sum()))
    order = np.argsort(masses)[::-1][:MAX_INTERESTS]
    interest_array = unit_rows(np.stack([interests[i] for i in order])) if len(order) else empty_vectors()
    mass_array = np.array([masses[i] for i in order], dtype=np.float32)
    shares = mass_array / mass_array.sum() if len(mass_array) else mass_array

    # History is newest first, so the first positives are the most recent.
    recent = list(dict.fromkeys(h.article_id for h in positives))[:RECENT_POSITIVE_QUERIES]
    dismissed = [h for h in history if h.kind == Interaction.Kind.DISMISS and h.vector is not None]
    return Profile(
        interests=interest_array.astype(np.float32),
        interest_shares=shares,
        recent_positives=_stack(strongest[i] for i in recent),
        positives=_stack(strongest.values()),
        dismissed=_stack(dismissed),
        dismissed_weights=np.array([h.weight for h in dismissed], dtype=np.float32),
        seen_ids={h.article_id for h in history},
        seen_stories={h.story_id for h in history if h.story_id is not None},
    )
