"""The shared vector index (VECTOR_INDEX_KIND=shared, above VECTOR_INDEX_EXACT_MAX articles).

Two tiers, so index memory per machine does not grow with the number of processes:

- **Base**: one IVF index over 8-bit scalar-quantised vectors (384 bytes an article instead of 1,536),
  written by one process of the machine and mapped read-only by all of them (pipeline.search.shared_file).
  Its labels are article ids. It only proposes candidates: their exact vectors come from Postgres (one
  indexed query per search, which is also the check that they are still live) and decide the order, so
  quantisation costs recall only where a true neighbour falls out of the candidate pool.
- **Delta**: articles processed (or re-processed) since the base was written, in a small exact in-memory
  index caught up from Postgres as in pipeline.search.vector_index. A base row whose article changed or went
  is "dead" in this process and skipped. When the delta passes VECTOR_INDEX_DELTA_MAX or a fifth of the base
  is dead, `save_index` writes a new generation; every other process switches to it at its next reconcile.

Same interface as vector_index.ArticleIndex, which the rest of the code uses.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import threading
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings

from pipeline.search import index_file, shared_file
from pipeline.search.index_file import IndexFileError
from pipeline.search.index_rows import EXACT, IndexRows, new_faiss_index, reconstruct
from pipeline.search.index_source import READ_CHUNK, database_label, fetch_candidates, fetch_stamps, fetch_vectors
from pipeline.understanding.embedding import EMBEDDING_DIM

logger = logging.getLogger(__name__)

SHARED = "ivf-sq8"
# k-means wants ~39 training points per list (FAISS warns below); more costs build time for little gain.
TRAIN_POINTS_PER_LIST = 40
COMPACT_DEAD_SHARE = 0.2
# A loaded generation disagreeing with Postgres on more than this share is treated as foreign and rebuilt.
FOREIGN_MISMATCH_SHARE = 0.5


def _release_freed_memory() -> None:
    """Hand the heap a reconcile freed back to the system (glibc keeps it otherwise).

    Comparing a million (id, stamp) pairs allocates ~140 MB of short-lived arrays; glibc's adaptive mmap
    threshold serves them from the heap and keeps the pages after they are freed, ~90 MB per process
    at a million articles (bench_index_scale measured it with smaps_rollup). Elsewhere than glibc: nothing.
    """
    name = ctypes.util.find_library("c")
    if name:
        trim = getattr(ctypes.CDLL(name), "malloc_trim", None)
        if trim is not None:
            trim(0)


def lists_for(count: int) -> int:
    """Inverted lists for `count` vectors: 2·√n (FAISS's guidance is 1-16·√n; fewer lists train faster)."""
    return max(1, min(count // TRAIN_POINTS_PER_LIST, int(2 * math.sqrt(count))))


def build_base(*, progress: bool = False) -> tuple[faiss.Index, np.ndarray, np.ndarray, int | None]:
    """(IVF-SQ8 index labelled by article id, ids, stamps, watermark) of every live article in Postgres.

    Trains on a random sample, then adds the rest chunk by chunk, so the builder never holds every
    fp32 vector at once (1.5 GB at a million).
    """
    ids, stamps = fetch_stamps()
    watermark = int(stamps.max()) if len(stamps) else None
    ids = np.sort(ids)
    nlist = lists_for(len(ids))
    quantizer = faiss.IndexFlatIP(EMBEDDING_DIM)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, EMBEDDING_DIM, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sample = np.random.default_rng(len(ids)).choice(ids, min(len(ids), TRAIN_POINTS_PER_LIST * nlist), replace=False)
    _, training, _ = fetch_vectors(sample.tolist())
    index.train(training if len(training) else np.zeros((1, EMBEDDING_DIM), dtype=np.float32))
    del training
    found_ids: list[np.ndarray] = []
    found_stamps: list[np.ndarray] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(ids), unit="article", desc="building the shared index")
    try:
        for start in range(0, len(ids), READ_CHUNK):
            chunk_ids, vectors, chunk_stamps = fetch_vectors(ids[start : start + READ_CHUNK].tolist())
            if len(chunk_ids):
                index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), chunk_ids)
            found_ids.append(chunk_ids)
            found_stamps.append(chunk_stamps)
            if bar is not None:
                bar.update(min(READ_CHUNK, len(ids) - start))
    finally:
        if bar is not None:
            bar.close()
    return index, np.concatenate(found_ids or [ids[:0]]), np.concatenate(found_stamps or [ids[:0]]), watermark


class TieredIndex:
    """A mapped compressed base, an exact delta, candidates re-ranked with Postgres's vectors."""

    kind = SHARED

    def __init__(self, base: shared_file.Base, *, path: Path) -> None:
        self.path = path  # VECTOR_INDEX_PATH: the generations live in shared_file.directory_for(path)
        self.database = base.database
        self._lock = threading.RLock()
        self._refresh_lock = threading.Lock()
        self._last_refresh = 0.0
        self._last_reconcile = time.monotonic()
        self._adopt(base)

    def _adopt(self, base: shared_file.Base) -> None:
        with self._lock:
            self._base = base
            self._dead: set[int] = set()  # base ids whose article changed or went since the base was written
            self._delta = IndexRows(new_faiss_index(EXACT), EXACT)
            self._watermark = base.watermark
            self._recent: dict[int, np.ndarray] = {}  # the last search's exact vectors, for vectors_for

    # --- reading ---

    def __len__(self) -> int:
        return len(self._base.ids) - len(self._dead) + len(self._delta.row_of)

    def __contains__(self, article_id: object) -> bool:
        return isinstance(article_id, int) and not self._missing([article_id])

    @property
    def caught_up_to(self) -> int | None:
        return self._watermark

    @property
    def dead_rows(self) -> int:
        return len(self._dead) + self._delta.dead

    @property
    def generation(self) -> str:
        return self._base.generation

    def stamp_of(self, article_id: int) -> int | None:
        with self._lock:
            stamp = self._delta.stamp_of(article_id)
            if stamp is None and article_id not in self._dead:
                stamp = self._base.stamp_of(article_id)
            return stamp

    def _missing(self, ids: Sequence[int]) -> list[int]:
        """Those of `ids` not held (in the delta, or in the base and not dead), with one search of the base's
        sorted ids for all of them: one search per id cost a similar answer ~2 ms for its pool of 100."""
        wanted = [int(i) for i in ids]
        with self._lock:
            delta, dead = self._delta, self._dead
            in_base, _ = self._base.positions(np.array(wanted, dtype=np.int64))
        return [
            i
            for i, held in zip(wanted, in_base.tolist(), strict=True)
            if i not in delta.row_of and (not held or i in dead)
        ]

    def ids(self) -> list[int]:
        with self._lock:
            base = [i for i in self._base.ids.tolist() if i not in self._dead]
            return base + list(self._delta.row_of)

    def vectors_for(self, ids: Sequence[int]) -> np.ndarray:
        """The current vectors of `ids` (delta, the last search, else Postgres); KeyError names any not indexed."""
        missing = self._missing(ids)
        if missing:
            raise KeyError(f"articles not in the vector index: {missing[:20]}")
        with self._lock:
            delta, recent = self._delta, self._recent
            known = {
                int(i): reconstruct(delta.index, np.array([delta.row_of[int(i)]]))[0]
                for i in ids
                if int(i) in delta.row_of
            }
        known.update({int(i): recent[int(i)] for i in ids if int(i) in recent and int(i) not in known})
        wanted = [int(i) for i in ids if int(i) not in known]
        if wanted:
            found_ids, vectors, _ = fetch_vectors(wanted)
            known.update(zip(found_ids.tolist(), vectors))
        gone = [i for i in ids if int(i) not in known]
        if gone:
            raise KeyError(f"articles no longer processed: {gone[:20]}")
        return np.stack([known[int(i)] for i in ids]) if ids else np.empty((0, EMBEDDING_DIM), dtype=np.float32)

    def search(
        self,
        vectors: np.ndarray,
        k: int,
        exclude_ids: Collection[int] = (),
        *,
        refresh: bool = True,
        check_database: bool = True,
    ) -> list[list[tuple[int, float]]]:
        """For each query vector, up to `k` (article id, exact cosine) pairs, best first.

        Base candidates are always checked against Postgres (their exact vectors come from there);
        `check_database` adds the same check for delta hits.
        """
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if queries.shape[1] != EMBEDDING_DIM:
            raise ValueError(f"query vectors must have {EMBEDDING_DIM} dimensions, not {queries.shape[1]}")
        if k <= 0 or len(queries) == 0:
            return [[] for _ in range(len(queries))]
        if refresh:
            self.refresh()
        excluded = {int(i) for i in exclude_ids}
        fetch = max(k, settings.VECTOR_INDEX_RERANK_POOL) + len(excluded)
        while True:
            base_hits, delta_hits, exhausted = self._candidates(queries, fetch, k, excluded)
            wanted = set().union(*base_hits)
            # Delta hits are scored from exact vectors held here: Postgres only says whether they are still
            # live, in the query that reads the base candidates' vectors (reading theirs too made a similar
            # answer beside a day's delta read twice the embeddings, for hits it mostly drops).
            checked = {i for hits in delta_hits for i, _ in hits} - wanted if check_database else set()
            exact: dict[int, np.ndarray] = {}
            live: set[int] = set()
            if wanted or checked:
                exact, live = fetch_candidates(wanted, checked)
            gone = (wanted - exact.keys()) | (checked - live)
            self._recent = exact
            results = self._ranked(queries, base_hits, delta_hits, exact, gone, k)
            if gone:
                self._drop(gone)
            if exhausted or all(len(hits) == k for hits in results):
                return results
            fetch *= 2

    @staticmethod
    def _ranked(
        queries: np.ndarray,
        base_hits: list[list[int]],
        delta_hits: list[list[tuple[int, float]]],
        exact: dict[int, np.ndarray],
        gone: set[int],
        k: int,
    ) -> list[list[tuple[int, float]]]:
        """Per query, the best `k` of its delta hits and its base candidates scored with their exact vectors."""
        results = []
        for query, base_ids, deltas in zip(queries, base_hits, delta_hits):
            scored = {i: s for i, s in deltas if i not in gone}
            for i in base_ids:
                if i in exact and i not in scored:
                    scored[i] = float(exact[i] @ query)
            results.append(sorted(scored.items(), key=lambda hit: -hit[1])[:k])
        return results

    def _candidates(
        self, queries: np.ndarray, fetch: int, k: int, excluded: set[int]
    ) -> tuple[list[list[int]], list[list[tuple[int, float]]], bool]:
        """Per query: base candidate ids (approximate order), delta hits with exact scores; whether both are spent."""
        with self._lock:
            base, dead, delta = self._base, self._dead, self._delta
            base_fetch = min(fetch, base.index.ntotal)
            base_hits: list[list[int]] = [[] for _ in queries]
            base_spent = True
            if base_fetch:
                _, labels = base.index.search(queries, base_fetch)
                # IVF returns -1 once the probed lists are spent: asking for more would not find more.
                base_spent = base_fetch >= base.index.ntotal or bool((labels < 0).any())
                base_hits = [
                    [i for i in row if i >= 0 and i not in dead and i not in excluded] for row in labels.tolist()
                ]
            delta_fetch = min(delta.index.ntotal, k + len(excluded) + min(delta.dead, 10 * k))
            delta_hits: list[list[tuple[int, float]]] = [[] for _ in queries]
            if delta_fetch:
                scores, rows = delta.index.search(queries, delta_fetch)
                for hits, score_row, row_row in zip(delta_hits, scores.tolist(), rows.tolist()):
                    for score, row in zip(score_row, row_row):
                        article_id = int(delta.ids[row]) if row >= 0 else -1
                        if row >= 0 and delta.row_of.get(article_id) == row and article_id not in excluded:
                            hits.append((article_id, float(score)))
            delta_spent = delta_fetch >= delta.index.ntotal
        return base_hits, delta_hits, base_spent and delta_spent

    def _drop(self, ids: Collection[int]) -> None:
        """Forget articles found deleted or no longer processed."""
        with self._lock:
            self._delta.forget(ids)
            found, _ = self._base.positions(np.fromiter(ids, dtype=np.int64, count=len(ids)))
            self._dead.update(int(i) for i, f in zip(ids, found.tolist()) if f)

    # --- keeping up with Postgres ---

    def refresh(self, *, force: bool = False) -> int:
        """Add articles processed since the last look to the delta (as ArticleIndex.refresh); returns how many."""
        now = time.monotonic()
        if not force and (now - self._last_refresh) * 1000 < settings.VECTOR_INDEX_REFRESH_MS:
            return 0
        if not self._refresh_lock.acquire(blocking=force):
            return 0
        try:
            self._last_refresh = now
            if now - self._last_reconcile >= settings.VECTOR_INDEX_RECONCILE_SECONDS:
                return self.reconcile()["added"]
            since = None
            if self._watermark is not None:
                since = self._watermark - settings.VECTOR_INDEX_CATCHUP_OVERLAP_SECONDS * 1_000_000
            ids, stamps = fetch_stamps(since)
            changed = [int(i) for i, s in zip(ids.tolist(), stamps.tolist()) if self.stamp_of(int(i)) != s]
            added = self._fetch_and_add(changed)
            if len(stamps):
                self._advance_watermark(int(stamps.max()))
            return added
        finally:
            self._refresh_lock.release()

    def reconcile(self) -> dict[str, int]:
        """Switch to a newer generation if one was written; then compare every (id, stamp) with Postgres."""
        if shared_file.current_generation(shared_file.directory_for(self.path)) not in (None, self.generation):
            self.switch_to_current()
        ids, stamps = fetch_stamps()
        with self._lock:
            base, delta = self._base, self._delta
            order = np.argsort(ids)
            db_ids, db_stamps = ids[order], stamps[order]
            # Base rows: dead when Postgres no longer has them with the same stamp.
            where = np.minimum(np.searchsorted(db_ids, base.ids), max(len(db_ids) - 1, 0))
            agree = (db_ids[where] == base.ids) & (db_stamps[where] == base.stamps) if len(db_ids) else base.ids < 0
            stale_base = set(np.asarray(base.ids)[~agree].tolist()) - self._dead
            self._dead |= stale_base
            delta_ids = np.fromiter(delta.row_of.keys(), dtype=np.int64, count=len(delta.row_of))
            delta_rows = np.fromiter(delta.row_of.values(), dtype=np.int64, count=len(delta.row_of))
            at = np.minimum(np.searchsorted(db_ids, delta_ids), max(len(db_ids) - 1, 0))
            if len(db_ids):
                fresh = (db_ids[at] == delta_ids) & (db_stamps[at] == delta.stamps[delta_rows])
            else:
                fresh = np.zeros(len(delta_ids), dtype=bool)
            stale_delta = delta_ids[~fresh].tolist()
            delta.forget(stale_delta)
            # Missing: in Postgres, but neither a live base row with that stamp nor in the delta.
            found, at = base.positions(db_ids)
            in_base = found & (np.asarray(base.stamps)[at] == db_stamps) if len(base.ids) else found
            dead = np.fromiter(self._dead, dtype=np.int64, count=len(self._dead))
            in_base &= ~np.isin(db_ids, dead)
            missing = [i for i in db_ids[~in_base].tolist() if i not in delta.row_of]
        added = self._fetch_and_add(missing)
        if len(stamps):
            self._advance_watermark(int(stamps.max()))
        self._last_reconcile = time.monotonic()
        del ids, stamps, order, db_ids, db_stamps, where, agree, found, at, in_base
        _release_freed_memory()
        return {"dropped": len(stale_base) + len(stale_delta), "added": added, "size": len(self)}

    def _fetch_and_add(self, ids: Sequence[int]) -> int:
        # Chunk by chunk: fetching 20,000 rows at once left ~3x their size behind in every process.
        added = 0
        for start in range(0, len(ids), READ_CHUNK):
            found_ids, vectors, stamps = fetch_vectors(ids[start : start + READ_CHUNK])
            with self._lock:
                self._delta.add(found_ids, vectors, stamps)
                in_base, _ = self._base.positions(found_ids)
                self._dead.update(found_ids[in_base].tolist())  # the delta holds their new version
            added += len(found_ids)
        return added

    def _advance_watermark(self, stamp: int) -> None:
        if self._watermark is None or stamp > self._watermark:
            self._watermark = stamp

    # --- new generations ---

    def needs_rebuild(self) -> bool:
        base_rows = self._base.index.ntotal
        return len(self._delta.row_of) > settings.VECTOR_INDEX_DELTA_MAX or (
            base_rows > 0 and len(self._dead) / base_rows > COMPACT_DEAD_SHARE
        )

    def rebuild(self) -> None:
        """Write a new generation from Postgres and switch to it (other processes switch at their reconcile)."""
        with index_file.lock(self.path):
            write_generation(self.path)
            self._adopt(shared_file.read(shared_file.directory_for(self.path), database=self.database))
        self.refresh(force=True)

    def switch_to_current(self) -> None:
        """Map the generation another process wrote; the caller reconciles (the delta starts empty)."""
        with index_file.lock(self.path):
            base = shared_file.read(shared_file.directory_for(self.path), database=self.database)
        self._adopt(base)

    def save(self, path: Path | str | None = None) -> Path:
        """The generation is already on disk; only a rebuild writes (see `needs_rebuild`)."""
        return shared_file.directory_for(Path(path or self.path))


def write_generation(path: Path, *, progress: bool = False) -> str:
    """Build a base from Postgres and write it as the machine's current generation (caller holds the lock)."""
    index, ids, stamps, watermark = build_base(progress=progress)
    return shared_file.write(
        shared_file.directory_for(path), index, ids, stamps, database=database_label(), watermark=watermark
    )


def load_or_build(path: Path, *, progress: bool = False) -> TieredIndex:
    """This machine's current generation reconciled with Postgres, or a new one written when unusable."""
    directory = shared_file.directory_for(path)
    database = database_label()
    with index_file.lock(path):  # processes starting together build once, the others then map it
        try:
            index = TieredIndex(shared_file.read(directory, database=database), path=path)
        except FileNotFoundError:
            logger.info("no shared vector index at %s; building it from the database", directory)
        except IndexFileError as error:
            logger.warning("rebuilding the shared vector index: %s", error)
        else:
            base_rows = index._base.index.ntotal
            outcome = index.reconcile()
            if outcome["dropped"] + outcome["added"] <= FOREIGN_MISMATCH_SHARE * max(base_rows, outcome["size"], 1):
                return index
            logger.warning("shared vector index at %s disagrees with the database; rebuilding", directory)
        write_generation(path, progress=progress)
        index = TieredIndex(shared_file.read(directory, database=database), path=path)
    index.refresh(force=True)  # rows processed while it was built: the overlap covers them
    return index


__all__ = ["SHARED", "TieredIndex", "build_base", "load_or_build", "lists_for", "write_generation"]
