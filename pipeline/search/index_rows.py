"""One FAISS index and the article id and stamp of each of its rows; which kind of index fits a size.

FAISS labels are row numbers into `ids`; a row whose article was re-processed or removed stays in
FAISS as a dead row (HNSW cannot delete) and is skipped, until the next compaction. Vectors are unit
length, so inner product is cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import faiss
import numpy as np
from django.conf import settings

from pipeline.understanding.embedding import EMBEDDING_DIM

EXACT = "exact"
APPROXIMATE = "hnsw"


@dataclass
class IndexRows:
    """One FAISS index and the article id and stamp of each of its rows."""

    index: faiss.Index
    kind: str
    ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    stamps: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    row_of: dict[int, int] = field(default_factory=dict)  # live article id -> row

    @property
    def dead(self) -> int:
        return len(self.ids) - len(self.row_of)

    def add(self, ids: np.ndarray, vectors: np.ndarray, stamps: np.ndarray) -> None:
        if len(ids) == 0:
            return
        start = self.index.ntotal
        self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.ids = np.concatenate([self.ids, np.asarray(ids, dtype=np.int64)])
        self.stamps = np.concatenate([self.stamps, np.asarray(stamps, dtype=np.int64)])
        for offset, article_id in enumerate(ids.tolist()):
            # A re-processed article's old row becomes dead: it no longer maps from its id.
            self.row_of[article_id] = start + offset

    def forget(self, ids: Iterable[int]) -> int:
        return sum(1 for article_id in ids if self.row_of.pop(int(article_id), None) is not None)

    def stamp_of(self, article_id: int) -> int | None:
        row = self.row_of.get(article_id)
        return None if row is None else int(self.stamps[row])

    def live_rows(self) -> np.ndarray:
        return np.fromiter(self.row_of.values(), dtype=np.int64, count=len(self.row_of))


def new_faiss_index(kind: str, dim: int = EMBEDDING_DIM) -> faiss.Index:
    if kind == EXACT:
        return faiss.IndexFlatIP(dim)
    if kind == APPROXIMATE:
        index = faiss.IndexHNSWFlat(dim, settings.VECTOR_INDEX_HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.VECTOR_INDEX_HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = settings.VECTOR_INDEX_HNSW_EF_SEARCH
        return index
    raise ValueError(f"unknown index kind {kind!r}")


def kind_for_size(count: int) -> str:
    """Exact search while it is fast enough, HNSW above `VECTOR_INDEX_EXACT_MAX` vectors.

    With VECTOR_INDEX_KIND=shared the in-memory index stays exact: above the limit, get_index() hands
    over to the shared tiered index instead (pipeline.search.tiered_index).
    """
    if settings.VECTOR_INDEX_KIND == "shared":
        return EXACT
    return APPROXIMATE if count > settings.VECTOR_INDEX_EXACT_MAX else EXACT


def reconstruct(index: faiss.Index, rows: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.empty((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))


def build_rows(ids: np.ndarray, vectors: np.ndarray, stamps: np.ndarray, kind: str | None = None) -> IndexRows:
    """A fresh FAISS index of the right kind for `len(ids)` holding exactly these vectors."""
    rows = IndexRows(new_faiss_index(kind or kind_for_size(len(ids))), kind or kind_for_size(len(ids)))
    rows.add(np.asarray(ids, dtype=np.int64), vectors, np.asarray(stamps, dtype=np.int64))
    return rows
