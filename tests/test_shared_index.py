"""The shared vector index (VECTOR_INDEX_KIND=shared) against real FAISS and the real Postgres: the mapped
compressed file, exact re-ranking from Postgres, the delta caught up from Postgres, new generations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import faiss
import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from articles.models import Article, Feed
from pipeline.search import shared_file, vector_index
from pipeline.search.tiered_index import SHARED, TieredIndex
from pipeline.search.vector_index import EXACT
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_to_bytes

CORPUS = 400


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def index_path(settings, tmp_path: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    settings.VECTOR_INDEX_PATH = tmp_path / "index.npz"
    settings.VECTOR_INDEX_KIND = "shared"
    settings.VECTOR_INDEX_EXACT_MAX = 100
    settings.VECTOR_INDEX_REFRESH_MS = 0
    # Every list probed: the candidates are then the whole corpus, so any gap to brute force would be the re-rank's.
    settings.VECTOR_INDEX_IVF_NPROBE = 1000
    vector_index.reset_index()
    yield settings.VECTOR_INDEX_PATH
    vector_index.reset_index()


@pytest.fixture
def source(db) -> Feed:  # type: ignore[no-untyped-def]
    return Feed.objects.create(url="https://example.invalid/shared.xml", title="Shared feed")


def store(feed: Feed, vectors: np.ndarray, *, start: int = 0, processed_at=None) -> list[int]:  # type: ignore[no-untyped-def]
    at = processed_at or timezone.now()
    articles = Article.objects.bulk_create(
        Article(
            feed=feed,
            guid=f"s-{start + i}",
            title=f"article {start + i}",
            status=Article.Status.PROCESSED,
            processed_at=at,
            embedding=vector_to_bytes(vector),
        )
        for i, vector in enumerate(vectors)
    )
    return [a.pk for a in articles]


def brute_force(vectors: np.ndarray, ids: list[int], query: np.ndarray, k: int) -> list[int]:
    return [ids[i] for i in np.argsort(-(vectors @ query), kind="stable")[:k]]


def mapped_files() -> str:
    return Path("/proc/self/maps").read_text()


def test_above_the_limit_the_index_is_one_mapped_compressed_file(source, index_path) -> None:
    store(source, unit_rows(CORPUS))
    index = vector_index.get_index()
    assert isinstance(index, TieredIndex) and index.kind == SHARED and len(index) == CORPUS
    directory = shared_file.directory_for(index_path)
    generation_file = directory / f"{index.generation}.faiss"
    assert generation_file.exists()
    ivf = faiss.downcast_index(index._base.index)
    assert isinstance(ivf, faiss.IndexIVFScalarQuantizer)
    # The inverted lists are read from the mapped file, not copied into this process.
    assert isinstance(faiss.downcast_InvertedLists(ivf.invlists), faiss.OnDiskInvertedLists)
    assert str(generation_file) in mapped_files()


def test_candidates_are_re_ranked_with_the_exact_vectors(source, index_path) -> None:
    vectors = unit_rows(CORPUS)
    ids = store(source, vectors)
    index = vector_index.get_index()
    queries = unit_rows(20, seed=99)  # not in the index
    found = index.search(queries, 10)
    for query, hits in zip(queries, found):
        assert [i for i, _ in hits] == brute_force(vectors, ids, query, 10)
        for article_id, score in hits:
            assert score == pytest.approx(float(vectors[ids.index(article_id)] @ query), abs=1e-6)
    # The quantised scores alone are off by more than that: the exact re-rank is what makes them exact.
    quantised, labels = index._base.index.search(queries[:1], 10)
    exact = np.array([vectors[ids.index(int(i))] @ queries[0] for i in labels[0]])
    assert np.abs(quantised[0] - exact).max() > 1e-5


def test_new_articles_are_caught_up_into_the_delta_without_rewriting_the_file(source, index_path) -> None:
    store(source, unit_rows(CORPUS))
    index = vector_index.get_index()
    generation = index.generation
    new = unit_rows(30, seed=3)
    new_ids = store(source, new, start=CORPUS, processed_at=timezone.now() + timedelta(seconds=1))
    [hits] = index.search(new[0], 1)
    assert hits[0] == (new_ids[0], pytest.approx(1.0, abs=1e-5))
    assert len(index) == CORPUS + 30 and len(index._delta.row_of) == 30
    assert (
        index.generation == generation
        and shared_file.current_generation(index_path.with_name("index.shared")) == generation
    )
    np.testing.assert_allclose(index.vectors_for(new_ids[:2]), new[:2], atol=1e-6)


def test_a_reprocessed_or_deleted_base_article_is_never_served_stale(source, index_path) -> None:
    vectors = unit_rows(CORPUS)
    ids = store(source, vectors)
    index = vector_index.get_index()
    replacement = unit_rows(1, seed=5)[0]
    Article.objects.filter(pk=ids[0]).update(
        embedding=vector_to_bytes(replacement), processed_at=timezone.now() + timedelta(seconds=1)
    )
    Article.objects.filter(pk=ids[1]).delete()
    [hits] = index.search(replacement, 1)
    assert hits[0] == (ids[0], pytest.approx(1.0, abs=1e-5))
    [near_deleted] = index.search(vectors[1], 5)
    assert ids[1] not in [i for i, _ in near_deleted]
    np.testing.assert_allclose(index.vectors_for([ids[0]])[0], replacement, atol=1e-6)
    assert len(index) == CORPUS - 1 and ids[1] not in index
    with pytest.raises(KeyError):
        index.vectors_for([ids[1]])


def test_delta_hits_are_checked_live_without_reading_their_vectors_again(
    source, index_path, django_assert_num_queries
) -> None:
    store(source, unit_rows(CORPUS))
    index = vector_index.get_index()
    new = unit_rows(30, seed=3)
    new_ids = store(source, new, start=CORPUS, processed_at=timezone.now() + timedelta(seconds=1))
    index.refresh(force=True)
    Article.objects.filter(pk=new_ids[1]).delete()  # the delta still holds it: only Postgres knows
    query = (new[0] + new[1]) / np.linalg.norm(new[0] + new[1])
    # One query reads the base candidates' vectors and asks whether the delta's hits are still live.
    with django_assert_num_queries(1):
        [hits] = index.search(query, 5, refresh=False)
    found = [i for i, _ in hits]
    assert found[0] == new_ids[0] and new_ids[1] not in found and len(found) == 5
    # What that query read as vectors (kept for vectors_for) is base rows only.
    assert index._recent and not set(index._recent) & set(new_ids)
    assert new_ids[1] not in index


def test_vectors_for_reads_base_rows_in_one_query_and_names_what_is_not_held(
    source, index_path, django_assert_num_queries
) -> None:
    vectors = unit_rows(CORPUS)
    ids = store(source, vectors)
    index = vector_index.get_index()
    new = unit_rows(2, seed=7)
    new_ids = store(source, new, start=CORPUS, processed_at=timezone.now() + timedelta(seconds=1))
    index.refresh(force=True)
    # Base rows come from Postgres in one (counted) query, delta rows from memory; order as asked.
    with django_assert_num_queries(1):
        got = index.vectors_for([ids[5], new_ids[1], ids[6]])
    np.testing.assert_allclose(got, [vectors[5], new[1], vectors[6]], atol=1e-6)
    Article.objects.filter(pk=ids[3]).delete()
    index.search(vectors[3], 5)  # finds it gone: dead in this process
    never = 10**9
    with pytest.raises(KeyError) as error:
        index.vectors_for([ids[0], new_ids[0], ids[3], never])
    assert str([ids[3], never]) in str(error.value)


def test_processes_of_a_machine_map_the_same_generation(source, index_path) -> None:
    store(source, unit_rows(CORPUS))
    first = vector_index.get_index()
    vector_index.reset_index()  # as another process starting on this machine
    second = vector_index.get_index()
    assert second is not first and second.generation == first.generation


def test_a_large_delta_writes_a_new_generation_that_other_processes_switch_to(source, index_path, settings) -> None:
    store(source, unit_rows(CORPUS))
    other = vector_index.get_index()
    vector_index.reset_index()
    writer = vector_index.get_index()
    settings.VECTOR_INDEX_DELTA_MAX = 20
    new_ids = store(source, unit_rows(30, seed=4), start=CORPUS, processed_at=timezone.now() + timedelta(seconds=1))
    outcome = vector_index.save_index()
    assert outcome["kind"] == SHARED
    assert writer.generation != other.generation and len(writer._delta.row_of) == 0
    directory = shared_file.directory_for(index_path)
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [shared_file.POINTER, f"{writer.generation}.faiss", f"{writer.generation}.rows.npy"]
    )
    # The other process still searches the old file it maps (deleted, still readable)...
    [hits] = other.search(unit_rows(1, seed=4)[0], 1, refresh=False)
    assert len(hits) == 1 and hits[0][0] not in new_ids
    # ...and maps the new one at its next reconcile.
    other.reconcile()
    assert other.generation == writer.generation and len(other) == CORPUS + 30


def test_a_corrupt_generation_is_rebuilt(source, index_path) -> None:
    store(source, unit_rows(CORPUS))
    generation = vector_index.get_index().generation
    vector_index.reset_index()
    damaged = shared_file.directory_for(index_path) / f"{generation}.faiss"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    index = vector_index.get_index()
    assert index.generation != generation and len(index) == CORPUS


def test_an_exact_index_growing_past_the_limit_hands_over_to_the_shared_one(source, index_path) -> None:
    store(source, unit_rows(90))
    index = vector_index.get_index()
    assert index.kind == EXACT
    store(source, unit_rows(40, seed=8), start=90, processed_at=timezone.now() + timedelta(seconds=1))
    index.refresh(force=True)
    assert len(index) == 130 and index.kind == EXACT and not index.needs_rebuild()  # no HNSW in shared mode
    handed_over = vector_index.get_index()
    assert handed_over.kind == SHARED and len(handed_over) == 130


def test_rebuild_index_command_writes_a_generation(source, index_path) -> None:
    from io import StringIO

    store(source, unit_rows(CORPUS))
    out = StringIO()
    call_command("rebuild_index", "--no-progress", stdout=out)
    assert f"indexed {CORPUS} articles ({SHARED})" in out.getvalue()
    assert shared_file.current_generation(shared_file.directory_for(index_path)) is not None
