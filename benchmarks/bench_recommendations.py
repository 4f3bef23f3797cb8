"""Recommendation quality: nDCG@10 of GET /api/recommendations/ against most-recent and most-popular.

The BBC set (read from ../shared/datasets, never copied) is embedded once by the real model (cached
under var/bench-cache/) and loaded into the bench database as processed articles with publication
times spread over the last 30 days, topics given by the pipeline's own zero-shot classifier.

Simulated users each like 1-3 of the five BBC categories (random shares). Their past is a month of
interactions: at random moments they open a fresh article of a category they like (70 % read, 30 %
like), now and then read something outside their interests, and dismiss an article of a category
they do not like. Held out is what each does next: ten articles they open now, drawn the same way
(their categories, fresh articles more likely). Every method is scored on that held-out set with
what the user has already seen excluded: the recommender through the real API (URL, auth, view,
vector index), the newest articles, and the articles most interacted with by all users.
Users without any history are scored separately (cold start).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from benchmarks.embedding_cache import cached_embeddings

ROOT = Path(__file__).resolve().parent.parent
BBC_CSV = Path(os.environ.get("BBC_NEWS_CSV", ROOT.parent / "shared" / "datasets" / "bbc-news" / "bbc-news-train.csv"))
DESCRIPTIONS = ROOT / "docs" / "bbc-news-topic-descriptions.json"
CACHE_DIR = ROOT / "var" / "bench-cache"

SEED = int(os.environ.get("BENCH_RECOMMENDATIONS_SEED", "20261125"))
USERS = 120
COLD_USERS = 30
DAYS = 30
HISTORY_EVENTS = (15, 45)  # per user, uniform
HELD_OUT = 10
K = 10
# Probability of opening an article decays with its age at that moment (half-life in hours):
# news is read while it is news.
READ_HALF_LIFE_HOURS = 48.0
OFF_INTEREST_READ = 0.1
DISMISS_RATE = 0.1
LIKE_RATE = 0.3
USER_PREFIX = "bench-reco-"


def read_bbc() -> tuple[list[str], list[str]]:
    """(texts as the ingestion path embeds them, categories)."""
    from pipeline.understanding.embedding import article_text

    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open(BBC_CSV, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [article_text(None, None, row["Text"]) for row in rows], [row["Category"] for row in rows]


@dataclass
class SimUser:
    name: str
    topics: list[str]
    shares: np.ndarray
    events: list[tuple[int, str, float]] = field(default_factory=list)  # (article index, kind, hours ago)
    held_out: set[int] = field(default_factory=set)


def _pick_fresh(rng: np.random.Generator, candidates: np.ndarray, hours_ago: np.ndarray, at: float) -> int | None:
    """An article among `candidates` published before `at` (hours ago), fresher ones more likely."""
    ages = hours_ago[candidates] - at
    weights = np.where(ages >= 0, 0.5 ** (np.clip(ages, 0, None) / READ_HALF_LIFE_HOURS), 0.0)
    if not weights.any():
        return None
    return int(rng.choice(candidates, p=weights / weights.sum()))


def simulate_users(rng: np.random.Generator, categories: list[str], hours_ago: np.ndarray, count: int) -> list[SimUser]:
    """Users liking 1-3 categories, with a month of history and HELD_OUT next reads (see the docstring)."""
    names = sorted(set(categories))
    labels = np.array(categories)
    by_topic = {t: np.flatnonzero(labels == t) for t in names}
    everything = np.arange(len(categories))
    users = []
    for u in range(count):
        liked = [str(t) for t in rng.choice(names, size=int(rng.integers(1, 4)), replace=False)]
        user = SimUser(f"{USER_PREFIX}{u}", liked, rng.dirichlet(np.ones(len(liked))))
        unseen = np.ones(len(categories), dtype=bool)
        for at in sorted(rng.uniform(6, (DAYS - 1) * 24, int(rng.integers(*HISTORY_EVENTS))), reverse=True):
            roll = rng.random()
            if roll < DISMISS_RATE and len(liked) < len(names):
                pool, kind = np.concatenate([by_topic[t] for t in names if t not in liked]), "dismiss"
            elif roll < DISMISS_RATE + OFF_INTEREST_READ:
                pool, kind = everything, "read"
            else:
                topic = liked[int(rng.choice(len(liked), p=user.shares))]
                pool, kind = by_topic[topic], "like" if rng.random() < LIKE_RATE else "read"
            pool = pool[unseen[pool]]
            chosen = _pick_fresh(rng, pool, hours_ago, float(at)) if len(pool) else None
            if chosen is not None:
                unseen[chosen] = False
                user.events.append((chosen, kind, float(at)))
        while len(user.held_out) < HELD_OUT:
            topic = liked[int(rng.choice(len(liked), p=user.shares))]
            pool = by_topic[topic][unseen[by_topic[topic]]]
            chosen = _pick_fresh(rng, pool, hours_ago, 0.0)
            unseen[chosen] = False
            user.held_out.add(chosen)
        users.append(user)
    return users


def oracle_ranking(user: SimUser, categories: list[str], hours_ago: np.ndarray, seen: set[int]) -> list[int]:
    """The best possible order under the simulation: each unseen article by its chance of being read next.

    It knows what no recommender can (the user's true categories and shares, the read half-life), so it
    is the ceiling of this benchmark, not a method.
    """
    labels = np.array(categories)
    unseen = np.array([i not in seen for i in range(len(categories))])
    weights = 0.5 ** (hours_ago / READ_HALF_LIFE_HOURS)
    chance = np.zeros(len(categories))
    for topic, share in zip(user.topics, user.shares, strict=True):
        members = (labels == topic) & unseen
        chance[members] = share * weights[members] / weights[members].sum()
    return [int(i) for i in np.argsort(-chance, kind="stable")[:K]]


def ndcg(ranked: list[int], relevant: set[int], k: int = K) -> float:
    dcg = sum(1 / math.log2(rank + 2) for rank, item in enumerate(ranked[:k]) if item in relevant)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def _top_excluding(order: list[int], seen: set[int], k: int = K) -> list[int]:
    return [i for i in order if i not in seen][:k]


def _mean_and_error(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    error = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, error


def load_world(vectors: np.ndarray, texts: list[str], published: list) -> list[int]:
    """Replace the bench database's articles with the BBC set; returns article ids in CSV order."""
    from django.db import connection

    from articles.models import Article, Feed, Topic
    from pipeline.understanding.embedding import vector_to_bytes
    from pipeline.understanding.topic_models import active_topic_model

    with connection.cursor() as cursor:
        # The bench database is the benchmarks' own; each bench loads the world it measures.
        cursor.execute(
            "TRUNCATE articles_interaction, articles_article, articles_topic, articles_topicclassifier CASCADE"
        )
    descriptions = json.loads(DESCRIPTIONS.read_text())
    for name, description in descriptions.items():
        Topic.objects.create(name=name, description=description)
    model = active_topic_model()
    assert model is not None
    topic_ids, confidences = model.predict(vectors)
    feed, _ = Feed.objects.get_or_create(url="https://bench.invalid/bbc.xml", defaults={"title": "BBC (bench)"})
    now = max(published)
    rows = [
        Article(
            feed=feed,
            guid=f"bbc-{i}",
            title=" ".join(text.split()[:10])[:200],
            summary=text[:300],
            status=Article.Status.PROCESSED,
            published_at=published[i],
            processed_at=now,
            embedding=vector_to_bytes(vectors[i]),
            topic_id=int(topic_ids[i]),
            topic_confidence=float(confidences[i]),
            classified_by="zero_shot",
        )
        for i, text in enumerate(texts)
    ]
    return [a.pk for a in Article.objects.bulk_create(rows, batch_size=500)]


def run() -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.test import APIClient

    from articles.models import Interaction
    from pipeline.search import vector_index

    started = time.monotonic()
    texts, categories = read_bbc()
    vectors = cached_embeddings(texts, "bbc")
    rng = np.random.default_rng(SEED)
    now = timezone.now()
    hours_ago = rng.uniform(0, DAYS * 24, len(texts))
    published = [now - timedelta(hours=float(h)) for h in hours_ago]
    article_ids = load_world(vectors, texts, published)
    users = simulate_users(rng, categories, hours_ago, USERS)

    User = get_user_model()
    User.objects.filter(username__startswith=USER_PREFIX).delete()
    accounts = {u.name: User.objects.create_user(u.name) for u in users}
    cold_accounts = [User.objects.create_user(f"{USER_PREFIX}cold-{i}") for i in range(COLD_USERS)]
    Interaction.objects.bulk_create(
        [
            Interaction(
                user=accounts[u.name], article_id=article_ids[i], kind=kind, created_at=now - timedelta(hours=at)
            )
            for u in users
            for i, kind, at in u.events
        ],
        ignore_conflicts=True,
    )

    # The real index, built from the bench database into a cache file of its own.
    settings.VECTOR_INDEX_PATH = CACHE_DIR / "recommendations-index.npz"
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    vector_index.reset_index()
    position = {article_id: i for i, article_id in enumerate(article_ids)}
    newest_first = [int(i) for i in np.argsort(hours_ago, kind="stable")]
    popularity = np.zeros(len(texts))
    for u in users:
        for i, kind, _ in u.events:
            if kind != "dismiss":
                popularity[i] += 1
    # Ties (most articles have few readers) go to the newest.
    most_popular = [int(i) for i in np.lexsort((hours_ago, -popularity))]

    client = APIClient()
    scores: dict[str, list[float]] = {"recommender": [], "most recent": [], "most popular": [], "oracle": []}
    on_interest: dict[str, list[float]] = {name: [] for name in scores}
    latencies = []
    for u in users:
        seen = {i for i, _, _ in u.events}
        client.force_authenticate(accounts[u.name])
        began = time.perf_counter()
        response = client.get(f"/api/recommendations/?k={K}")
        latencies.append(time.perf_counter() - began)
        assert response.status_code == 200, response.content[:500]
        body = response.json()
        assert body["strategy"] == "personal", body["strategy"]
        ranked = {
            "recommender": [position[item["id"]] for item in body["results"]],
            "most recent": _top_excluding(newest_first, seen),
            "most popular": _top_excluding(most_popular, seen),
            "oracle": oracle_ranking(u, categories, hours_ago, seen),
        }
        for name, items in ranked.items():
            assert not seen & set(items), f"{name} recommended something seen"
            scores[name].append(ndcg(items, u.held_out))
            on_interest[name].append(sum(categories[i] in u.topics for i in items) / K)

    # Cold start: users with no history, held-out drawn as for everyone else.
    cold = simulate_users(np.random.default_rng(SEED + 1), categories, hours_ago, COLD_USERS)
    cold_scores: dict[str, list[float]] = {"recommender": [], "most recent": [], "most popular": [], "oracle": []}
    for account, u in zip(cold_accounts, cold, strict=True):
        client.force_authenticate(account)
        body = client.get(f"/api/recommendations/?k={K}").json()
        assert body["strategy"] == "cold_start"
        ranked = {
            "recommender": [position[item["id"]] for item in body["results"]],
            "most recent": newest_first[:K],
            "most popular": most_popular[:K],
            "oracle": oracle_ranking(u, categories, hours_ago, set()),
        }
        for name, items in ranked.items():
            cold_scores[name].append(ndcg(items, u.held_out))

    table = [["method", "nDCG@10 (± s.e.)", "share of the page in the user's topics", "cold-start nDCG@10 (± s.e.)"]]
    figures: dict[str, float] = {}
    for name in scores:
        mean, error = _mean_and_error(scores[name])
        cold_mean, cold_error = _mean_and_error(cold_scores[name])
        interest = statistics.fmean(on_interest[name])
        label = "simulation oracle (ceiling)" if name == "oracle" else name
        table.append([label, f"{mean:.3f} ± {error:.3f}", f"{interest:.1%}", f"{cold_mean:.3f} ± {cold_error:.3f}"])
        key = name.replace(" ", "_")
        figures[f"ndcg10_{key}"] = round(mean, 4)
        figures[f"on_interest_{key}"] = round(interest, 4)
        figures[f"cold_start_ndcg10_{key}"] = round(cold_mean, 4)
    figures["ndcg10_ratio_vs_most_recent"] = round(figures["ndcg10_recommender"] / figures["ndcg10_most_recent"], 2)
    figures["ndcg10_ratio_vs_most_popular"] = round(figures["ndcg10_recommender"] / figures["ndcg10_most_popular"], 2)
    figures["median_request_ms"] = round(statistics.median(latencies) * 1000, 1)
    figures["seconds"] = round(time.monotonic() - started, 1)
    events = sum(len(u.events) for u in users)
    notes = (
        f"{len(texts)} BBC articles published over {DAYS} days, topics by the pipeline's zero-shot classifier; "
        f"{USERS} simulated users liking 1-3 categories with {events} past interactions "
        f"({LIKE_RATE:.0%} likes, {OFF_INTEREST_READ:.0%} off-interest reads, {DISMISS_RATE:.0%} dismissals), "
        f"{HELD_OUT} held-out next reads each (fresh articles of their categories, read half-life "
        f"{READ_HALF_LIFE_HOURS:.0f} h); {COLD_USERS} users without history for the cold-start column. "
        f"The recommender is called through GET /api/recommendations/?k={K} (in-process API client, real vector "
        "index); every method leaves out what the user has seen. Ratios: recommender nDCG@10 / baseline's, "
        f"{figures['ndcg10_ratio_vs_most_recent']}x most recent, {figures['ndcg10_ratio_vs_most_popular']}x most "
        "popular. The oracle knows each user's true categories and the simulated read half-life: the ceiling "
        f"of this benchmark. Median request {figures['median_request_ms']} ms (1,490 articles; not a speed target). "
        f"Seed {SEED}."
    )
    return {"title": "Recommendations: nDCG@10 against baselines", "figures": figures, "table": table, "notes": notes}
