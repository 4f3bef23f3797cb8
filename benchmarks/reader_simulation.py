"""Simulated readers that do not share the recommender's assumptions.

What the recommender assumes (pipeline.search.recommending): interests are the pipeline's topics, and
everyone likes news equally fresh (one 48 h half-life). These readers differ on both counts:

- Interests are mixtures over latent sub-topics: k-means clusters of the real article embeddings
  (`SUBTOPICS` of them), not the pipeline's topic labels. A reader likes 1-4 sub-topics with
  Dirichlet(1) weights; their taste for an article is log sum_j w_j exp(SHARPNESS * cos(article, centre_j)).
- Each reader has their own freshness half-life, drawn log-uniformly from `HALF_LIFE_RANGE_HOURS`.
- They read from a front page in recency order, examining position r with probability
  1 / (1 + r / POSITION_SCALE) (position bias), and pick by taste + freshness + Gumbel noise
  (a softmax choice); `RANDOM_READ` of reads are of any recent article at random.
- A read becomes a like when the article is close to one of their sub-topics (cos > LIKE_COSINE) with
  probability LIKE_RATE; now and then (DISMISS_RATE) they dismiss a front-page article far from all
  their sub-topics.

History is a month of sessions; held out is what each reader opens next, now, by the same process.
Nothing here is read by the recommender or the baselines: they see only the interactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SUBTOPICS = 40
SUBTOPICS_PER_READER = (1, 4)  # inclusive
SHARPNESS = 15.0
HALF_LIFE_RANGE_HOURS = (6.0, 168.0)
POSITION_SCALE = 20.0
RANDOM_READ = 0.1
LIKE_COSINE = 0.45
LIKE_RATE = 0.5
DISMISS_RATE = 0.05
HISTORY_READS = (15, 45)  # per reader, uniform
HELD_OUT = 10
DAYS = 30

PARAMETERS = {
    "subtopics (k-means of the embeddings)": SUBTOPICS,
    "subtopics per reader": f"{SUBTOPICS_PER_READER[0]}-{SUBTOPICS_PER_READER[1]}, Dirichlet(1) weights",
    "taste sharpness": SHARPNESS,
    "freshness half-life per reader (h, log-uniform)": f"{HALF_LIFE_RANGE_HOURS[0]:g}-{HALF_LIFE_RANGE_HOURS[1]:g}",
    "position bias": f"1 / (1 + rank / {POSITION_SCALE:g}) over a recency-ordered front page",
    "random reads": RANDOM_READ,
    "like: cosine to a sub-topic above, then probability": f"{LIKE_COSINE}, {LIKE_RATE}",
    "dismissals per read": DISMISS_RATE,
    "history reads per reader": f"{HISTORY_READS[0]}-{HISTORY_READS[1]} over {DAYS} days",
    "held-out next reads": HELD_OUT,
}


@dataclass
class Reader:
    name: str
    subtopics: np.ndarray  # cluster indices
    weights: np.ndarray
    half_life_hours: float
    events: list[tuple[int, str, float]] = field(default_factory=list)  # (article, kind, hours ago)
    held_out: list[int] = field(default_factory=list)


def subtopic_centres(vectors: np.ndarray, seed: int) -> np.ndarray:
    """Unit centres of k-means clusters of the article embeddings."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=SUBTOPICS, n_init=4, random_state=seed).fit(vectors)
    centres = km.cluster_centers_
    return (centres / np.linalg.norm(centres, axis=1, keepdims=True)).astype(np.float32)


class World:
    """Articles (unit vectors, hours since publication) and the readers' behaviour over them."""

    def __init__(self, vectors: np.ndarray, hours_ago: np.ndarray, centres: np.ndarray) -> None:
        self.vectors = vectors
        self.hours_ago = hours_ago
        self.similarity = vectors @ centres.T  # (articles, subtopics)

    def taste(self, reader: Reader) -> np.ndarray:
        scaled = SHARPNESS * self.similarity[:, reader.subtopics]
        peak = scaled.max(axis=1, keepdims=True)
        return (peak[:, 0] + np.log((reader.weights * np.exp(scaled - peak)).sum(axis=1))).astype(np.float64)

    def read_once(
        self, rng: np.random.Generator, reader: Reader, taste: np.ndarray, at: float, unseen: np.ndarray
    ) -> int | None:
        """One article the reader opens at `at` hours ago, or None when nothing is out yet."""
        available = np.flatnonzero(unseen & (self.hours_ago >= at))
        if not len(available):
            return None
        ages = self.hours_ago[available] - at
        if rng.random() < RANDOM_READ:
            return int(rng.choice(available))
        rank = np.empty(len(available))
        rank[np.argsort(ages, kind="stable")] = np.arange(len(available))
        examined = np.log(1.0 / (1.0 + rank / POSITION_SCALE))
        freshness = -np.log(2) * ages / reader.half_life_hours
        utility = taste[available] + freshness + examined + rng.gumbel(size=len(available))
        return int(available[np.argmax(utility)])

    def simulate(self, rng: np.random.Generator, count: int, prefix: str) -> list[Reader]:
        readers = []
        n = len(self.hours_ago)
        for u in range(count):
            k = int(rng.integers(SUBTOPICS_PER_READER[0], SUBTOPICS_PER_READER[1] + 1))
            reader = Reader(
                f"{prefix}{u}",
                rng.choice(self.similarity.shape[1], size=k, replace=False),
                rng.dirichlet(np.ones(k)),
                float(np.exp(rng.uniform(*np.log(HALF_LIFE_RANGE_HOURS)))),
            )
            taste = self.taste(reader)
            unseen = np.ones(n, dtype=bool)
            moments = sorted(rng.uniform(1, DAYS * 24, int(rng.integers(HISTORY_READS[0], HISTORY_READS[1] + 1))))
            for at in reversed(moments):  # oldest first
                chosen = self.read_once(rng, reader, taste, float(at), unseen)
                if chosen is None:
                    continue
                unseen[chosen] = False
                close = self.similarity[chosen, reader.subtopics].max() > LIKE_COSINE
                kind = "like" if close and rng.random() < LIKE_RATE else "read"
                reader.events.append((chosen, kind, float(at)))
                if rng.random() < DISMISS_RATE:
                    front = np.flatnonzero(unseen & (self.hours_ago >= at))
                    front = front[np.argsort(self.hours_ago[front] - at)][:30]
                    far = front[taste[front] < np.quantile(taste, 0.25)]
                    if len(far):
                        dismissed = int(rng.choice(far))
                        unseen[dismissed] = False
                        reader.events.append((dismissed, "dismiss", float(at)))
            while len(reader.held_out) < HELD_OUT:
                chosen = self.read_once(rng, reader, taste, 0.0, unseen)
                if chosen is None:
                    break
                unseen[chosen] = False
                reader.held_out.append(chosen)
            readers.append(reader)
        return readers
