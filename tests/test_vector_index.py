"""The vector index against the real Postgres: choice of kind, the cache file, catch-up and removal."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.search import vector_index
from pipeline.search.vector_index import APPROXIMATE, EXACT, IndexFileError
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_to_bytes


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def index_path(settings, tmp_path: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    settings.VECTOR_INDEX_PATH = tmp_path / "index.npz"
    # This module is the per-process index (exact, then HNSW); tests/test_shared_index.py is the default one.
    settings.VECTOR_INDEX_KIND = "per-process"
    settings.VECTOR_INDEX_REFRESH_MS = 0  # every search catches up: the tests add rows between searches
    vector_index.reset_index()
    yield settings.VECTOR_INDEX_PATH
    vector_index.reset_index()


@pytest.fixture
def source(db) -> Feed:  # type: ignore[no-untyped-def]
    return Feed.objects.create(url="https://example.invalid/index.xml", title="Index feed")


def store(feed: Feed, vectors: np.ndarray, *, processed_at=None, start: int = 0) -> list[int]:  # type: ignore[no-untyped-def]
    """Processed articles with these embeddings; returns their ids in order."""
    at = processed_at or timezone.now()
    articles = Article.objects.bulk_create(
        Article(
            feed=feed,
            guid=f"g-{start + i}",
            title=f"article {start + i}",
            status=Article.Status.PROCESSED,
            processed_at=at,
            embedding=vector_to_bytes(vector),
        )
        for i, vector in enumerate(vectors)
    )
    return [a.pk for a in articles]


def brute_force(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-(vectors @ query), kind="stable")[:k]
    return [ids[i] for i in order]


def test_small_index_is_exact_and_matches_brute_force(source, index_path) -> None:
    vectors = unit_rows(40)
    ids = store(source, vectors)
    index = vector_index.get_index()
    assert index.kind == EXACT and len(index) == 40
    query = unit_rows(1, seed=7)[0]
    [hits] = index.search(query, 5)
    assert [i for i, _ in hits] == brute_force(vectors, ids, query, 5)
    assert hits[0][1] == pytest.approx(float(vectors[ids.index(hits[0][0])] @ query), abs=1e-5)


def test_large_index_is_approximate_with_high_recall(source, index_path, settings) -> None:
    settings.VECTOR_INDEX_EXACT_MAX = 100
    vectors = unit_rows(400)
    ids = store(source, vectors)
    index = vector_index.build_from_database()  # as `rebuild_index` does
    assert index.kind == APPROXIMATE and len(index) == 400
    queries = unit_rows(20, seed=3)
    results = index.search(queries, 10)
    recall = np.mean(
        [len({i for i, _ in hits} & set(brute_force(vectors, ids, q, 10))) / 10 for q, hits in zip(queries, results)]
    )
    assert recall >= 0.95


def test_cold_start_serves_at_once_and_converts_in_the_background(source, index_path, settings) -> None:
    """A process without a cache file must not wait for an HNSW build: exact first, converted meanwhile."""
    settings.VECTOR_INDEX_EXACT_MAX = 100
    vectors = unit_rows(300)
    ids = store(source, vectors)
    index = vector_index.get_index()
    [hits] = index.search(vectors[7], 1)
    assert hits[0][0] == ids[7]
    deadline = time.monotonic() + 20
    while (index.kind != APPROXIMATE or index._rebuilding) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert index.kind == APPROXIMATE and len(index) == 300
    assert vector_index.load(index_path).kind == APPROXIMATE  # saved for the next process


def test_vectors_for_returns_stored_vectors_and_names_unknown_ids(source, index_path) -> None:
    vectors = unit_rows(5)
    ids = store(source, vectors)
    index = vector_index.get_index()
    np.testing.assert_allclose(index.vectors_for([ids[3], ids[0]]), vectors[[3, 0]], atol=1e-6)
    with pytest.raises(KeyError, match="999999"):
        index.vectors_for([ids[0], 999999])


def test_search_excludes_ids_and_returns_k(source, index_path) -> None:
    vectors = unit_rows(30)
    ids = store(source, vectors)
    [hits] = vector_index.get_index().search(vectors[0], 3, exclude_ids=[ids[0]])
    assert ids[0] not in [i for i, _ in hits] and len(hits) == 3


def test_catches_up_with_articles_processed_after_it_was_built(source, index_path) -> None:
    store(source, unit_rows(10))
    index = vector_index.get_index()
    assert len(index) == 10
    new = unit_rows(1, seed=99)
    [new_id] = store(source, new, start=100)
    [hits] = index.search(new[0], 1)
    assert hits[0][0] == new_id
    assert len(index) == 11


def test_catch_up_sees_a_commit_that_lands_out_of_processed_at_order(source, index_path) -> None:
    """A batch stamped before the newest row the index saw, committed after it (within the overlap)."""
    now = timezone.now()
    store(source, unit_rows(5), processed_at=now)
    index = vector_index.get_index()
    late = unit_rows(1, seed=42)
    # As late as the overlap allows (processing's write statement bounds how late a commit can land).
    lateness = timedelta(seconds=django_settings.VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS * 0.9)
    [late_id] = store(source, late, processed_at=now - lateness, start=50)
    [hits] = index.search(late[0], 1)
    assert hits[0][0] == late_id


def test_reprocessed_article_is_searched_with_its_new_vector(source, index_path) -> None:
    vectors = unit_rows(10)
    ids = store(source, vectors)
    index = vector_index.get_index()
    replacement = unit_rows(1, seed=5)[0]
    Article.objects.filter(pk=ids[0]).update(
        embedding=vector_to_bytes(replacement), processed_at=timezone.now() + timedelta(seconds=1)
    )
    [hits] = index.search(replacement, 1)
    assert hits[0] == (ids[0], pytest.approx(1.0, abs=1e-5))
    np.testing.assert_allclose(index.vectors_for([ids[0]])[0], replacement, atol=1e-6)
    assert len(index) == 10 and index.dead_rows == 1


def test_deleted_or_unprocessed_articles_never_come_back(source, index_path) -> None:
    vectors = unit_rows(10)
    ids = store(source, vectors)
    index = vector_index.get_index()
    Article.objects.filter(pk=ids[0]).delete()
    Article.objects.filter(pk=ids[1]).update(status=Article.Status.FAILED)
    results = index.search(vectors[:2], 10)
    for hits in results:
        found = [i for i, _ in hits]
        assert ids[0] not in found and ids[1] not in found
        assert len(found) == 8
    assert len(index) == 8


def test_save_and_load_round_trip(source, index_path) -> None:
    vectors = unit_rows(20)
    ids = store(source, vectors)
    index = vector_index.get_index()
    path = index.save()
    assert path == index_path
    assert list(index_path.parent.glob("*.tmp")) == []
    loaded = vector_index.load(index_path)
    assert sorted(loaded.ids()) == sorted(ids)
    assert loaded.search(vectors[4], 3, refresh=False) == index.search(vectors[4], 3, refresh=False)


def test_failed_save_leaves_the_previous_file_whole(source, index_path, monkeypatch) -> None:
    store(source, unit_rows(5))
    index = vector_index.get_index()
    index.save()
    before = index_path.read_bytes()
    store(source, unit_rows(5, seed=1), start=10)
    index.refresh(force=True)

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(OSError, match="disk full"):
        index.save()
    assert index_path.read_bytes() == before
    assert list(index_path.parent.glob("*.tmp")) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_file_is_detected_and_rebuilt(source, index_path, damage) -> None:
    vectors = unit_rows(12)
    ids = store(source, vectors)
    vector_index.get_index().save()
    data = bytearray(index_path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        data = bytearray(b"not an index at all")
    index_path.write_bytes(bytes(data))
    with pytest.raises(IndexFileError):
        vector_index.load(index_path)
    vector_index.reset_index()
    rebuilt = vector_index.get_index()
    assert sorted(rebuilt.ids()) == sorted(ids)
    assert sorted(vector_index.load(index_path).ids()) == sorted(ids)  # and the file was rewritten


def test_stale_file_is_reconciled_with_the_database(source, index_path) -> None:
    vectors = unit_rows(10)
    ids = store(source, vectors)
    vector_index.get_index().save()
    # Meanwhile, on another machine: one article deleted, one added long before the file's watermark.
    Article.objects.filter(pk=ids[0]).delete()
    [old_id] = store(source, unit_rows(1, seed=8), processed_at=timezone.now() - timedelta(days=3), start=50)
    vector_index.reset_index()
    index = vector_index.get_index()
    assert sorted(index.ids()) == sorted(ids[1:] + [old_id])


def test_foreign_file_is_rebuilt(source, index_path, settings) -> None:
    vectors = unit_rows(10)
    ids = store(source, vectors)
    index = vector_index.get_index()
    index.database = "elsewhere:5432/other"
    index.save()
    with pytest.raises(IndexFileError, match="elsewhere"):
        vector_index.load(index_path)
    vector_index.reset_index()
    assert sorted(vector_index.get_index().ids()) == sorted(ids)


def test_growing_past_the_limit_rebuilds_as_approximate(source, index_path, settings) -> None:
    settings.VECTOR_INDEX_EXACT_MAX = 50
    store(source, unit_rows(40))
    index = vector_index.get_index()
    index.rebuild_in_background = False
    assert index.kind == EXACT
    more = unit_rows(30, seed=2)
    more_ids = store(source, more, start=100)
    [hits] = index.search(more[0], 1)
    assert hits[0][0] == more_ids[0]
    assert index.kind == APPROXIMATE and len(index) == 70 and index.dead_rows == 0


def test_rebuild_keeps_rows_added_while_it_ran(source, index_path) -> None:
    vectors = unit_rows(10)
    ids = store(source, vectors)
    index = vector_index.get_index()
    original = vector_index.build_rows

    def build_while_rows_arrive(*args, **kwargs):  # type: ignore[no-untyped-def]
        rows = original(*args, **kwargs)
        Article.objects.filter(pk=ids[0]).delete()
        store(source, unit_rows(1, seed=77), start=200)
        index.refresh(force=True)
        index.search(vectors[0], 10)  # forgets the deleted article in the old index
        return rows

    vector_index.build_rows = build_while_rows_arrive
    try:
        index.rebuild()
    finally:
        vector_index.build_rows = original
    # The deleted article stays out (a dead row until the next compaction), the new one is in.
    assert len(index) == 10 and ids[0] not in index
    [hits] = index.search(unit_rows(1, seed=77)[0], 1)
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
