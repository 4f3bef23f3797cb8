"""The FAISS index over article embeddings: derived from Postgres, cached on local disk, caught up on use.

Postgres holds the embeddings; this index is a per-process copy built for fast search. Each process
(web worker, Dramatiq worker) has one, from `get_index()`:

- **Start.** It loads this machine's cache file (`settings.VECTOR_INDEX_PATH`) and reconciles it with
  Postgres: rows whose (id, processed_at) no longer match are dropped or re-fetched, so a stale file
  costs a small catch-up; a missing, corrupt or foreign file (another database, another vector size,
  mostly unknown rows) is rebuilt from Postgres and written back. The file is never the truth, so
  web servers and workers on different machines, sharing only Postgres and Redis, each keep their own.
- **Catch-up.** Every search first adds what was processed since (at most once per
  `VECTOR_INDEX_REFRESH_MS`): rows with `processed_at` past the newest seen minus an overlap, skipping
  those already in with the same stamp. The overlap is there because rows become visible a little out of
  processed_at order: processing stamps them in its write statement, which commits within its 10 s
  statement timeout (pipeline.understanding.processing), so a 30 s overlap covers it; every `VECTOR_INDEX_RECONCILE_SECONDS` a full (id, processed_at) comparison heals
  anything older.
- **Removal.** Search results are checked against Postgres (one indexed query per search), so an
  article deleted or no longer processed never comes back; it is dropped from the index then.
- **Kind by size.** Exact inner-product search (`IndexFlatIP`) up to `VECTOR_INDEX_EXACT_MAX` vectors;
  above, with `VECTOR_INDEX_KIND=shared`, one compressed file per machine that every process maps
  (pipeline.search.tiered_index, the same interface), else (per-process, the default) HNSW (recall@10 against exact measured in benchmarks/bench_search.py). An index that grows
  past the limit, or carries many dead rows, is rebuilt in a background thread while it keeps serving.

Vectors are unit length, so inner product is cosine similarity. FAISS labels are row numbers into
`_row_ids`; a row whose article was re-processed or removed stays in FAISS as a dead row (HNSW cannot
delete) and is skipped, until the next compaction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from django.conf import settings

from pipeline.search import index_file, tiered_index
from pipeline.search.index_file import IndexFileError
from pipeline.search.index_rows import (
    APPROXIMATE,
    EXACT,
    IndexRows,
    build_rows,
    kind_for_size,
    new_faiss_index,
    reconstruct,
)
from pipeline.search.index_source import (
    READ_CHUNK,
    database_label,
    fetch_stamps,
    fetch_vectors,
    live_article_ids,
    live_count,
)
from pipeline.search.tiered_index import TieredIndex
from pipeline.understanding.embedding import EMBEDDING_DIM

__all__ = ["APPROXIMATE", "EXACT", "ArticleIndex", "IndexFileError", "build_rows", "get_index", "load", "reset_index"]

logger = logging.getLogger(__name__)

# A loaded file is treated as foreign, and rebuilt, when more than this share of its rows or of
# Postgres's rows disagree: re-fetching nearly everything row by row is slower than a bulk rebuild.
FOREIGN_MISMATCH_SHARE = 0.5
# Dead rows (re-processed or removed articles) past this share of the index trigger a compaction.
COMPACT_DEAD_SHARE = 0.2


class ArticleIndex:
    """Nearest-neighbour search over processed articles' embeddings; see the module docstring."""

    # A web request that finds the index due for a rebuild should not wait for it; tests want it now.
    rebuild_in_background = True

    def __init__(self, rows: IndexRows | None = None, *, path: Path | None = None, database: str = "") -> None:
        self._rows = rows if rows is not None else IndexRows(new_faiss_index(EXACT), EXACT)
        self.path = path
        self.database = database
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0
        self._last_reconcile = time.monotonic()
        self._rebuilding = False
        self._watermark: int | None = int(self._rows.stamps.max()) if len(self._rows.stamps) else None

    # --- reading ---

    def __len__(self) -> int:
        return len(self._rows.row_of)

    def __contains__(self, article_id: object) -> bool:
        return isinstance(article_id, int) and article_id in self._rows.row_of

    @property
    def kind(self) -> str:
        return self._rows.kind

    @property
    def caught_up_to(self) -> int | None:
        """Stamp (processed_at, µs) of the newest row taken in; None while the index is empty."""
        return self._watermark

    @property
    def dead_rows(self) -> int:
        return self._rows.dead

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._rows.row_of)

    def vectors_for(self, ids: Sequence[int]) -> np.ndarray:
        """The indexed vectors of `ids`, one row each in order; KeyError names any id not indexed."""
        with self._lock:
            rows = self._rows
            missing = [i for i in ids if int(i) not in rows.row_of]
            if missing:
                raise KeyError(f"articles not in the vector index: {missing[:20]}")
            return reconstruct(rows.index, np.array([rows.row_of[int(i)] for i in ids], dtype=np.int64))

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        exclude_ids: Collection[int] = (),
        *,
        refresh: bool = True,
        check_database: bool = True,
    ) -> list[list[tuple[int, float]]]:
        """For each query vector, up to `k` (article id, cosine) pairs, best first.

        Catches up with newly processed articles first (`refresh`) and, with `check_database`,
        leaves out (and forgets) articles that were deleted or are no longer processed.
        """
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if queries.shape[1] != EMBEDDING_DIM:
            raise ValueError(f"query vectors must have {EMBEDDING_DIM} dimensions, not {queries.shape[1]}")
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        if refresh:
            self.refresh()
        excluded = {int(i) for i in exclude_ids}
        while True:
            results, exhausted = self._search_rows(queries, k, excluded)
            if not check_database:
                return results
            found = {article_id for result in results for article_id, _ in result}
            gone = found - live_article_ids(found)
            if not gone:
                return results
            with self._lock:
                self._rows.forget(gone)
            if exhausted:
                return [[hit for hit in result if hit[0] not in gone] for result in results]

    def _search_rows(
        self, queries: np.ndarray, k: int, excluded: set[int]
    ) -> tuple[list[list[tuple[int, float]]], bool]:
        """Search FAISS, skipping dead rows and `excluded`, widening until each query has k or the index is spent."""
        with self._lock:
            rows = self._rows
            total = rows.index.ntotal
            fetch = min(total, k + len(excluded) + min(rows.dead, 10 * k))
            while True:
                if fetch == 0:
                    return [[] for _ in range(len(queries))], True
                scores, labels = rows.index.search(queries, fetch)
                results: list[list[tuple[int, float]]] = []
                for score_row, label_row in zip(scores, labels):
                    hits: list[tuple[int, float]] = []
                    for score, label in zip(score_row.tolist(), label_row.tolist()):
                        if label < 0:
                            continue
                        article_id = int(rows.ids[label])
                        if rows.row_of.get(article_id) != label or article_id in excluded:
                            continue
                        hits.append((article_id, float(score)))
                        if len(hits) == k:
                            break
                    results.append(hits)
                exhausted = fetch >= total
                if exhausted or all(len(hits) == k for hits in results):
                    return results, exhausted
                fetch = min(total, fetch * 2)

    # --- keeping up with Postgres ---

    def refresh(self, *, force: bool = False) -> int:
        """Add articles processed since the last look; returns how many rows were added or replaced.

        Rate-limited to once per `VECTOR_INDEX_REFRESH_MS` unless `force`; a thread that finds another
        one refreshing does not wait for it. A full reconcile runs every `VECTOR_INDEX_RECONCILE_SECONDS`.
        """
        now = time.monotonic()
        if not force and (now - self._last_refresh) * 1000 < settings.VECTOR_INDEX_REFRESH_MS:
            return 0
        if not self._refresh_lock.acquire(blocking=force):
            return 0
        try:
            self._last_refresh = now
            if now - self._last_reconcile >= settings.VECTOR_INDEX_RECONCILE_SECONDS:
                added = self.reconcile()["added"]
                self._maybe_rebuild()
                return added
            since = None
            if self._watermark is not None:
                since = self._watermark - settings.VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS * 1_000_000
            ids, stamps = fetch_stamps(since)
            with self._lock:
                changed = [int(i) for i, s in zip(ids.tolist(), stamps.tolist()) if self._rows.stamp_of(int(i)) != s]
            added = self._fetch_and_add(changed)
            if len(stamps):
                self._advance_watermark(int(stamps.max()))
            self._maybe_rebuild()
            return added
        finally:
            self._refresh_lock.release()

    def reconcile(self) -> dict[str, int]:
        """Compare every (id, processed_at) with Postgres: drop rows that are gone or stale, add what is missing."""
        ids, stamps = fetch_stamps()
        database = dict(zip(ids.tolist(), stamps.tolist()))
        with self._lock:
            rows = self._rows
            stale = [i for i, row in rows.row_of.items() if database.get(i) != int(rows.stamps[row])]
            rows.forget(stale)
            missing = [i for i in database if i not in rows.row_of]
        added = self._fetch_and_add(missing)
        if len(stamps):
            self._advance_watermark(int(stamps.max()))
        self._last_reconcile = time.monotonic()
        return {"dropped": len(stale), "added": added, "size": len(self)}

    def _fetch_and_add(self, ids: Sequence[int]) -> int:
        if not ids:
            return 0
        found_ids, vectors, stamps = fetch_vectors(ids)
        with self._lock:
            self._rows.add(found_ids, vectors, stamps)
        return len(found_ids)

    def _advance_watermark(self, stamp: int) -> None:
        if self._watermark is None or stamp > self._watermark:
            self._watermark = stamp

    # --- rebuilding in place ---

    def needs_rebuild(self) -> bool:
        """Whether the kind no longer fits the size, or dead rows take too much of the index."""
        rows = self._rows
        if rows.kind != kind_for_size(len(rows.row_of)):
            # Some slack either side so an index near the limit does not flip back and forth.
            limit = settings.VECTOR_INDEX_EXACT_MAX
            size = len(rows.row_of)
            return size > limit * 1.1 if rows.kind == EXACT else size < limit * 0.9
        return rows.index.ntotal > 0 and rows.dead / rows.index.ntotal > COMPACT_DEAD_SHARE

    def rebuild(self) -> None:
        """Rebuild FAISS from the live rows (right kind for the size, no dead rows), serving meanwhile."""
        with self._lock:
            snapshot = self._rows
            live = np.sort(snapshot.live_rows())
            ids = snapshot.ids[live]
            stamps = snapshot.stamps[live]
            vectors = reconstruct(snapshot.index, live)
            seen_rows = snapshot.index.ntotal
        rebuilt = build_rows(ids, vectors, stamps)  # the slow part, outside the lock
        with self._lock:
            current = self._rows
            # Catch up with what changed in the old index while the new one was built.
            gone = [i for i in rebuilt.row_of if current.row_of.get(i) is None]
            rebuilt.forget(gone)
            newer = np.array(
                [
                    row
                    for row in range(seen_rows, current.index.ntotal)
                    if current.row_of.get(int(current.ids[row])) == row
                ],
                dtype=np.int64,
            )
            if len(newer):
                rebuilt.add(current.ids[newer], reconstruct(current.index, newer), current.stamps[newer])
            self._rows = rebuilt

    def _maybe_rebuild(self) -> None:
        if self._rebuilding or not self.needs_rebuild():
            return
        self._rebuilding = True
        if self.rebuild_in_background:
            threading.Thread(target=self._rebuild_and_save, name="vector-index-rebuild", daemon=True).start()
        else:
            self._rebuild_and_save()

    def _rebuild_and_save(self) -> None:
        try:
            self.rebuild()
            if self.path is not None:
                self.save()  # the next process on this machine starts from the rebuilt index
        except Exception:  # noqa: BLE001 - the old index keeps serving; the next refresh tries again
            logger.exception("rebuilding the vector index failed")
        finally:
            self._rebuilding = False

    def save(self, path: Path | str | None = None) -> Path:
        """Write the index to this machine's cache file atomically; returns the path."""
        target = Path(path or self.path or settings.VECTOR_INDEX_PATH)
        with self._lock:
            snap = index_file.snapshot(self._rows)
        return index_file.write(target, snap, database=self.database or database_label(), watermark=self._watermark)


def build_from_database(*, progress: bool = False, path: Path | None = None, kind: str | None = None) -> ArticleIndex:
    """A new index of every processed article's embedding, read in chunks (with a tqdm bar if `progress`).

    `kind` defaults to the right one for the size; EXACT builds in seconds at any size (an HNSW
    build of 100k vectors takes about a minute), and a later refresh converts it in the background.
    """
    ids, stamps = fetch_stamps()
    order = np.argsort(ids)
    ids, stamps = ids[order], stamps[order]
    kind = kind or kind_for_size(len(ids))
    rows = IndexRows(new_faiss_index(kind), kind)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="article", desc=f"building {rows.kind} index")
    try:
        for start in range(0, len(ids), READ_CHUNK):
            found_ids, vectors, found_stamps = fetch_vectors(ids[start : start + READ_CHUNK].tolist())
            rows.add(found_ids, vectors, found_stamps)
            if bar is not None:
                bar.update(min(READ_CHUNK, len(ids) - start))
    finally:
        if bar is not None:
            bar.close()
    index = ArticleIndex(rows, path=path, database=database_label())
    # Rows processed while we read are picked up by the next refresh: the overlap covers them.
    index.refresh(force=True)
    return index


def load(path: Path | str) -> ArticleIndex:
    """The index saved at `path`, as written (not yet reconciled); IndexFileError if it is unusable."""
    rows, database = index_file.read(Path(path), database=database_label())
    return ArticleIndex(rows, path=Path(path), database=database)


def load_or_build(path: Path | str | None = None, *, progress: bool = False) -> ArticleIndex:
    """This machine's cached index reconciled with Postgres, or a rebuild (saved) when the cache is unusable.

    A rebuild here is exact, so the process that needs an index (often a web request) gets one in
    seconds; when the size calls for HNSW, the first search starts converting it in the background.
    """
    path = Path(path or settings.VECTOR_INDEX_PATH)
    with index_file.lock(path):  # processes starting together build once, the others then load
        try:
            index = load(path)
        except FileNotFoundError:
            logger.info("no vector index at %s; building it from the database", path)
        except IndexFileError as error:
            logger.warning("rebuilding the vector index: %s", error)
        else:
            before = len(index)
            outcome = index.reconcile()
            disagree = outcome["dropped"] + outcome["added"]
            if disagree <= FOREIGN_MISMATCH_SHARE * max(before, outcome["size"], 1) or outcome["size"] < 100:
                if disagree:
                    index.save(path)
                return index
            logger.warning("vector index at %s disagrees with the database on %s rows; rebuilding", path, disagree)
        index = build_from_database(progress=progress, path=path, kind=EXACT)
        index.save(path)
        return index


_index: ArticleIndex | TieredIndex | None = None
_index_lock = threading.Lock()


def _wants_shared(size: int) -> bool:
    return settings.VECTOR_INDEX_KIND == "shared" and size > settings.VECTOR_INDEX_EXACT_MAX


def get_index() -> ArticleIndex | TieredIndex:
    """This process's index: loaded (or built) on first use, then kept and caught up by each search.

    With VECTOR_INDEX_KIND=shared, an exact index that has grown past VECTOR_INDEX_EXACT_MAX (with 10 %
    slack) is handed over to the machine's shared index here, once.
    """
    global _index
    index = _index
    if index is not None and not (isinstance(index, ArticleIndex) and _wants_shared(int(len(index) / 1.1))):
        return index
    with _index_lock:
        if _index is None:
            path = Path(settings.VECTOR_INDEX_PATH)
            # Counted only when the shared kind is configured: per-process needs no count to start.
            shared = settings.VECTOR_INDEX_KIND == "shared" and _wants_shared(live_count())
            _index = tiered_index.load_or_build(path) if shared else load_or_build(path)
        elif isinstance(_index, ArticleIndex) and _wants_shared(int(len(_index) / 1.1)):
            _index = tiered_index.load_or_build(Path(settings.VECTOR_INDEX_PATH))
        return _index


def reset_index() -> None:
    """Forget this process's index (tests, and `rebuild_index`); the next `get_index()` loads again."""
    global _index
    with _index_lock:
        _index = None


def save_index() -> dict[str, object]:
    """Reconcile this process's index with Postgres, compact it if due, and write it to the cache file.

    The shared index is written only when due (a large delta or many dead rows): a new generation.
    """
    index = get_index()
    outcome = index.reconcile()
    if index.needs_rebuild():
        index.rebuild()
    path = index.save()
    return {**outcome, "kind": index.kind, "path": str(path)}


def rebuild_on_disk(*, progress: bool = False) -> tuple[int, str, Path]:
    """What `manage.py rebuild_index` does: (articles, kind, path) of the cache written from Postgres."""
    path = Path(settings.VECTOR_INDEX_PATH)
    if _wants_shared(live_count()):
        with index_file.lock(path):
            tiered_index.write_generation(path, progress=progress)
        index = tiered_index.load_or_build(path)
        return len(index), index.kind, index.save()
    built = build_from_database(progress=progress)
    return len(built), built.kind, built.save()
