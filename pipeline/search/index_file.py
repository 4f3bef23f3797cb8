"""The vector index's cache file on this machine's disk: written atomically, checked when read.

The file is never the truth (Postgres is): a missing, corrupt (checksum) or foreign file (another
database, another vector size) is reported as IndexFileError and the caller rebuilds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings

from pipeline.search.index_rows import APPROXIMATE, IndexRows
from pipeline.understanding.embedding import EMBEDDING_DIM

FILE_FORMAT = "newsrec-vector-index-v1"


class IndexFileError(Exception):
    """The cache file is unreadable, corrupt or was written for something else."""


@dataclass(frozen=True)
class Snapshot:
    """What a file holds, copied from the live index under its lock so the write itself can go without."""

    index_bytes: np.ndarray
    ids: np.ndarray  # dead rows as -1, so row numbers still match FAISS labels
    stamps: np.ndarray
    kind: str
    count: int


def snapshot(rows: IndexRows) -> Snapshot:
    ids = np.full(len(rows.ids), -1, dtype=np.int64)
    live = rows.live_rows()
    ids[live] = rows.ids[live]
    return Snapshot(faiss.serialize_index(rows.index), ids, rows.stamps.copy(), rows.kind, int(len(live)))


def write(target: Path, snap: Snapshot, *, database: str, watermark: int | None) -> Path:
    """Write atomically (temp file in the same directory, fsync, rename); returns the path."""
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FILE_FORMAT,
        "kind": snap.kind,
        "dim": EMBEDDING_DIM,
        "database": database,
        "count": snap.count,
        "watermark": watermark,
        "sha256": _checksum(snap.index_bytes, snap.ids, snap.stamps),
    }
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".tmp", delete=False)
    try:
        with handle:
            np.savez(
                handle,
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
                index=snap.index_bytes,
                ids=snap.ids,
                stamps=snap.stamps,
            )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return target


def read(path: Path, *, database: str) -> tuple[IndexRows, str]:
    """The rows saved at `path` and the database they came from; IndexFileError if the file is unusable
    or was built from another database than `database`. FileNotFoundError passes through."""
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
    if meta.get("database") != database:
        raise IndexFileError(f"{path}: built from {meta.get('database')}, not {database}")
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
        faiss.ParameterSpace().set_index_parameter(faiss_index, "efSearch", settings.VECTOR_INDEX_HNSW_EF_SEARCH)
    rows = IndexRows(faiss_index, kind, ids=ids.astype(np.int64), stamps=stamps.astype(np.int64))
    rows.row_of = {int(article_id): row for row, article_id in enumerate(ids.tolist()) if article_id >= 0}
    return rows, meta["database"]


def _checksum(index_bytes: np.ndarray, ids: np.ndarray, stamps: np.ndarray) -> str:
    digest = hashlib.sha256()
    for part in (np.asarray(index_bytes, dtype=np.uint8), ids, stamps):
        digest.update(np.ascontiguousarray(part).tobytes())
    return digest.hexdigest()


@contextmanager
def lock(path: Path) -> Iterator[None]:
    """Serialises processes of one machine around the file: those starting together build it once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
