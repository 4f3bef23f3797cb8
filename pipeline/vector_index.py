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
  those already in with the same stamp. The overlap is there because a processing batch stamps
  `processed_at` when it starts and commits up to its time limit later, so rows become visible out of
  processed_at order; every `VECTOR_INDEX_RECONCILE_SECONDS` a full (id, processed_at) comparison heals
  anything older.
- **Removal.** Search results are checked against Postgres (one indexed query per search), so an
  article deleted or no longer processed never comes back; it is dropped from the index then.
- **Kind by size.** Exact inner-product search (`IndexFlatIP`) up to `VECTOR_INDEX_EXACT_MAX` vectors,
  HNSW above (recall@10 against exact measured in benchmarks/bench_search.py). An index that grows
  past the limit, or carries many dead rows, is rebuilt in a background thread while it keeps serving.

Vectors are unit length, so inner product is cosine similarity. FAISS labels are row numbers into
`_row_ids`; a row whose article was re-processed or removed stays in FAISS as a dead row (HNSW cannot
delete) and is skipped, until the next compaction.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from django.conf import settings
from django.db import connection

from articles.models import Article
from pipeline.embedding import EMBEDDING_DIM, vector_from_bytes

logger = logging.getLogger(__name__)

FILE_FORMAT = "newsrec-vector-index-v1"
EXACT = "exact"
APPROXIMATE = "hnsw"

# Rows are read from Postgres in chunks this size (1,536 bytes of embedding each).
READ_CHUNK = 5000
# A loaded file is treated as foreign, and rebuilt, when more than this share of its rows or of
# Postgres's rows disagree: re-fetching nearly everything row by row is slower than a bulk rebuild.
FOREIGN_MISMATCH_SHARE = 0.5
# Dead rows (re-processed or removed articles) past this share of the index trigger a compaction.
COMPACT_DEAD_SHARE = 0.2

_TABLE = Article._meta.db_table
# processed_at as integer microseconds, computed in SQL everywhere so stamps compare exactly.
_STAMP_SQL = "(extract(epoch from processed_at) * 1000000)::bigint"
_LIVE_SQL = f"status = '{Article.Status.PROCESSED}' AND embedding IS NOT NULL AND processed_at IS NOT NULL"


class IndexFileError(Exception):
    """The cache file is unreadable, corrupt or was written for something else."""


@dataclass
class _Rows:
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
    """Exact search while it is fast enough, HNSW above `VECTOR_INDEX_EXACT_MAX` vectors."""
    return APPROXIMATE if count > settings.VECTOR_INDEX_EXACT_MAX else EXACT


def _reconstruct(index: faiss.Index, rows: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.empty((0, index.d), dtype=np.float32)
    return index.reconstruct_batch(np.ascontiguousarray(rows, dtype=np.int64))


def _database_label() -> str:
    """Which database a file was built from: a file from another one is foreign even with matching ids."""
    db = connection.settings_dict
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or ''}/{db.get('NAME')}"


# --- reading Postgres ---


def _fetch_stamps(since_stamp: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, stamps) of live rows, all of them or those with processed_at past `since_stamp`."""
    sql = f"SELECT id, {_STAMP_SQL} FROM {_TABLE} WHERE {_LIVE_SQL}"
    params: list[Any] = []
    if since_stamp is not None:
        # Written as a timestamp comparison so the processed_at index serves it.
        sql += " AND processed_at > to_timestamp(%s / 1000000.0)"
        params.append(since_stamp)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    array = np.array(rows, dtype=np.int64)
    return array[:, 0], array[:, 1]


def _fetch_vectors(ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, stamps) of those of `ids` that are live, in chunks; ids missing are left out."""
    out_ids: list[int] = []
    out_stamps: list[int] = []
    vectors: list[np.ndarray] = []
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, {_STAMP_SQL}, embedding FROM {_TABLE} WHERE {_LIVE_SQL} AND id = ANY(%s)",
                [chunk],
            )
            for article_id, stamp, data in cursor.fetchall():
                try:
                    vectors.append(vector_from_bytes(data))
                except ValueError:
                    logger.warning("article %s has a malformed embedding; left out of the index", article_id)
                    continue
                out_ids.append(article_id)
                out_stamps.append(stamp)
    matrix = np.stack(vectors) if vectors else np.empty((0, EMBEDDING_DIM), dtype=np.float32)
    return np.array(out_ids, dtype=np.int64), matrix, np.array(out_stamps, dtype=np.int64)


def live_article_ids(ids: Collection[int]) -> set[int]:
    """Those of `ids` that are still processed articles with an embedding."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_TABLE} WHERE {_LIVE_SQL} AND id = ANY(%s)", [list(ids)])
        return {row[0] for row in cursor.fetchall()}


class ArticleIndex:
    """Nearest-neighbour search over processed articles' embeddings; see the module docstring."""

    # A web request that finds the index due for a rebuild should not wait for it; tests want it now.
    rebuild_in_background = True

    def __init__(self, rows: _Rows | None = None, *, path: Path | None = None, database: str = "") -> None:
        self._rows = rows if rows is not None else _Rows(new_faiss_index(EXACT), EXACT)
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
            return _reconstruct(rows.index, np.array([rows.row_of[int(i)] for i in ids], dtype=np.int64))

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
            ids, stamps = _fetch_stamps(since)
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
        ids, stamps = _fetch_stamps()
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
        found_ids, vectors, stamps = _fetch_vectors(ids)
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
            vectors = _reconstruct(snapshot.index, live)
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
                rebuilt.add(current.ids[newer], _reconstruct(current.index, newer), current.stamps[newer])
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

    # --- the cache file ---

    def save(self, path: Path | str | None = None) -> Path:
        """Write the index atomically (temp file in the same directory, fsync, rename); returns the path."""
        target = Path(path or self.path or settings.VECTOR_INDEX_PATH)
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            rows = self._rows
            index_bytes = faiss.serialize_index(rows.index)
            # Dead rows are saved as id -1 so row numbers still match FAISS labels.
            ids = np.full(len(rows.ids), -1, dtype=np.int64)
            live = rows.live_rows()
            ids[live] = rows.ids[live]
            stamps = rows.stamps.copy()
            kind = rows.kind
        meta = {
            "format": FILE_FORMAT,
            "kind": kind,
            "dim": EMBEDDING_DIM,
            "database": self.database or _database_label(),
            "count": int(len(live)),
            "watermark": self._watermark,
            "sha256": _checksum(index_bytes, ids, stamps),
        }
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".tmp", delete=False)
        try:
            with handle:
                np.savez(
                    handle,
                    meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                    index=index_bytes,
                    ids=ids,
                    stamps=stamps,
                )
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        return target


def _checksum(index_bytes: np.ndarray, ids: np.ndarray, stamps: np.ndarray) -> str:
    digest = hashlib.sha256()
    for part in (np.asarray(index_bytes, dtype=np.uint8), ids, stamps):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


def build_rows(ids: np.ndarray, vectors: np.ndarray, stamps: np.ndarray, kind: str | None = None) -> _Rows:
    """A fresh FAISS index of the right kind for `len(ids)` holding exactly these vectors."""
    rows = _Rows(new_faiss_index(kind or kind_for_size(len(ids))), kind or kind_for_size(len(ids)))
    rows.add(np.asarray(ids, dtype=np.int64), vectors, np.asarray(stamps, dtype=np.int64))
    return rows


def build_from_database(*, progress: bool = False, path: Path | None = None, kind: str | None = None) -> ArticleIndex:
    """A new index of every processed article's embedding, read in chunks (with a tqdm bar if `progress`).

    `kind` defaults to the right one for the size; EXACT builds in seconds at any size (an HNSW
    build of 100k vectors takes about a minute), and a later refresh converts it in the background.
    """
    ids, stamps = _fetch_stamps()
    order = np.argsort(ids)
    ids, stamps = ids[order], stamps[order]
    kind = kind or kind_for_size(len(ids))
    rows = _Rows(new_faiss_index(kind), kind)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="article", desc=f"building {rows.kind} index")
    try:
        for start in range(0, len(ids), READ_CHUNK):
            found_ids, vectors, found_stamps = _fetch_vectors(ids[start : start + READ_CHUNK].tolist())
            rows.add(found_ids, vectors, found_stamps)
            if bar is not None:
                bar.update(min(READ_CHUNK, len(ids) - start))
    finally:
        if bar is not None:
            bar.close()
    index = ArticleIndex(rows, path=path, database=_database_label())
    # Rows processed while we read are picked up by the next refresh: the overlap covers them.
    index.refresh(force=True)
    return index


def load(path: Path | str) -> ArticleIndex:
    """The index saved at `path`, as written (not yet reconciled); IndexFileError if it is unusable."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            index_bytes = data["index"]
            ids = data["ids"]
            stamps = data["stamps"]
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - zip, CRC, JSON or array errors: all mean corrupt
        raise IndexFileError(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    if meta.get("format") != FILE_FORMAT:
        raise IndexFileError(f"{path}: format {meta.get('format')!r}, expected {FILE_FORMAT}")
    if meta.get("dim") != EMBEDDING_DIM:
        raise IndexFileError(f"{path}: {meta.get('dim')}-d vectors, this model makes {EMBEDDING_DIM}-d")
    if meta.get("database") != _database_label():
        raise IndexFileError(f"{path}: built from {meta.get('database')}, not {_database_label()}")
    if meta.get("sha256") != _checksum(index_bytes, ids, stamps):
        raise IndexFileError(f"{path}: checksum mismatch")
    try:
        faiss_index = faiss.deserialize_index(index_bytes)
    except Exception as error:  # noqa: BLE001 - FAISS raises RuntimeError on a bad buffer
        raise IndexFileError(f"{path}: FAISS could not read it ({error})") from error
    if faiss_index.ntotal != len(ids) or faiss_index.d != EMBEDDING_DIM or len(stamps) != len(ids):
        raise IndexFileError(f"{path}: {faiss_index.ntotal} vectors for {len(ids)} ids")
    kind = meta.get("kind")
    if kind == APPROXIMATE:
        faiss.downcast_index(faiss_index).hnsw.efSearch = settings.VECTOR_INDEX_HNSW_EF_SEARCH
    rows = _Rows(faiss_index, kind, ids=ids.astype(np.int64), stamps=stamps.astype(np.int64))
    rows.row_of = {int(article_id): row for row, article_id in enumerate(ids.tolist()) if article_id >= 0}
    return ArticleIndex(rows, path=path, database=meta["database"])


def load_or_build(path: Path | str | None = None, *, progress: bool = False) -> ArticleIndex:
    """This machine's cached index reconciled with Postgres, or a rebuild (saved) when the cache is unusable.

    A rebuild here is exact, so the process that needs an index (often a web request) gets one in
    seconds; when the size calls for HNSW, the first search starts converting it in the background.
    """
    path = Path(path or settings.VECTOR_INDEX_PATH)
    with _file_lock(path):  # processes starting together build once, the others then load
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


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_index: ArticleIndex | None = None
_index_lock = threading.Lock()


def get_index() -> ArticleIndex:
    """This process's index: loaded (or built) on first use, then kept and caught up by each search."""
    global _index
    index = _index
    if index is not None:
        return index
    with _index_lock:
        if _index is None:
            _index = load_or_build()
        return _index


def reset_index() -> None:
    """Forget this process's index (tests, and `rebuild_index`); the next `get_index()` loads again."""
    global _index
    with _index_lock:
        _index = None


def save_index() -> dict[str, object]:
    """Reconcile this process's index with Postgres, compact it if due, and write it to the cache file."""
    index = get_index()
    outcome = index.reconcile()
    if index.needs_rebuild():
        index.rebuild()
    path = index.save()
    return {**outcome, "kind": index.kind, "path": str(path)}
