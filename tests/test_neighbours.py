from __future__ import annotations

import numpy as np
import pytest

from pipeline.search.neighbours import Neighbour, find_similar
from pipeline.understanding.classification import zero_shot_model
from pipeline.understanding.embedding import EMBEDDING_DIM


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def basis(n: int) -> np.ndarray:
    """n orthonormal directions."""
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((EMBEDDING_DIM, n)))
    return q.T.astype(np.float32)


def at_cosine(query: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at `cosine` to `query`, leaning toward the orthogonal `other`."""
    return unit(cosine * query + np.sqrt(1 - cosine**2) * other)


def test_returns_the_nearest_best_first_without_the_query() -> None:
    e = basis(6)
    query = e[0]
    candidates = np.stack([query, at_cosine(query, e[1], 0.5), at_cosine(query, e[2], 0.8), e[3]])
    found = find_similar(query, candidates, ["q", "far", "near", "unrelated"], k=2, expansion_size=0)
    assert [n.id for n in found] == ["near", "far"]
    assert found[0] == Neighbour("near", pytest.approx(0.8, abs=1e-5))


def test_excludes_ids_and_near_duplicates_of_the_query() -> None:
    e = basis(4)
    query = e[0]
    candidates = np.stack([at_cosine(query, e[1], 0.95), at_cosine(query, e[2], 0.7), at_cosine(query, e[3], 0.6)])
    ids = [10, 11, 12]
    assert [n.id for n in find_similar(query, candidates, ids, k=5)] == [11, 12]
    assert [n.id for n in find_similar(query, candidates, ids, k=5, exclude_ids={11})] == [12]
    loose = find_similar(query, candidates, ids, k=5, duplicate_threshold=0.99, expansion_size=0)
    assert [n.id for n in loose] == [10, 11, 12]


def test_collapses_candidates_that_duplicate_each_other() -> None:
    e = basis(4)
    query = e[0]
    story = at_cosine(query, e[1], 0.7)
    same_story = unit(story + 0.05 * e[2])
    candidates = np.stack([story, same_story, at_cosine(query, e[3], 0.5)])
    found = find_similar(query, candidates, ["feed-a", "feed-b", "other"], k=3, expansion_size=0)
    assert [n.id for n in found] == ["feed-a", "other"]


def test_topic_agreement_reorders_close_candidates() -> None:
    e = basis(4)  # e[2] and e[3] are the two topic directions
    query = unit(e[0] + 0.5 * e[2])
    other_topic = unit(e[0] + 0.5 * e[3] + 0.2 * e[1])  # cosine 0.79 to the query
    same_topic = unit(0.8 * e[0] + 0.5 * e[2] + 0.9 * e[1])  # cosine 0.72
    topic_model = zero_shot_model(["x", "y"], np.stack([e[2], e[3]]))
    candidates = np.stack([other_topic, same_topic])
    ids = ["other-topic", "same-topic"]
    plain = find_similar(query, candidates, ids, k=2, expansion_size=0)
    reranked = find_similar(query, candidates, ids, k=2, expansion_size=0, topic_model=topic_model)
    assert [n.id for n in plain] == ["other-topic", "same-topic"]
    assert [n.id for n in reranked] == ["same-topic", "other-topic"]


def test_only_the_pool_of_nearest_is_reranked() -> None:
    e = basis(5)
    query = unit(e[0] + 0.2 * e[3])
    candidates = np.stack([at_cosine(e[0], e[1], 0.9), at_cosine(e[0], e[2], 0.5), unit(e[3] + 0.1 * e[0])])
    topic_model = zero_shot_model(["x", "y"], np.stack([e[3], e[4]]))
    found = find_similar(query, candidates, [1, 2, 3], k=2, pool_size=2, topic_model=topic_model, topic_weight=5.0)
    assert 3 not in [n.id for n in found]


def test_handles_empty_and_mismatched_input() -> None:
    query = basis(1)[0]
    assert find_similar(query, np.empty((0, EMBEDDING_DIM), np.float32), [], k=10) == []
    assert find_similar(query, query[None, :], [1], k=0) == []
    with pytest.raises(ValueError):
        find_similar(query, np.stack([query, query]), [1], k=1)
