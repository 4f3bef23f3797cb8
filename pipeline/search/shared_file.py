"""The shared vector index's files on this machine's disk: one compressed FAISS file per generation,
mapped read-only by every process of the machine, and a pointer naming the current generation.

Why files and a pointer: a process maps a generation's file (`faiss.IO_FLAG_MMAP` turns an IVF index's
inverted lists into an `OnDiskInvertedLists` over the file), so the page cache holds one copy however
many processes search it. A new generation is written beside the old one and the pointer is replaced
atomically; a process still mapping the old file keeps its pages (Linux frees an unlinked file's pages
only when the last map goes), so old files can be deleted at once.

Like the per-process cache, the files are never the truth (Postgres is): a missing, corrupt (checksum) or
foreign (another database, another vector size) generation is reported and the caller rebuilds it.
Callers hold `index_file.lock(path)` around reading and writing, so a reader never opens a file that a
writer is deleting.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from django.conf import settings

from pipeline.search.index_file import IndexFileError
from pipeline.understanding.embedding import EMBEDDING_DIM

FILE_FORMAT = "newsrec-shared-index-v1"
POINTER = "current.json"


def directory_for(path: Path) -> Path:
    """Where the shared generations of the cache at `path` (VECTOR_INDEX_PATH) live: `articles.shared/`."""
    return path.with_name(path.stem + ".shared")


@dataclass(frozen=True)
class Base:
    """One generation, mapped: an IVF-SQ8 index whose labels are article ids, and its rows sorted by id."""

    index: faiss.Index
    ids: np.ndarray  # sorted article ids, memory-mapped from the rows file
    stamps: np.ndarray  # processed_at (µs) of each, same order
    generation: str
    watermark: int | None
    database: str

    def positions(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each of `ids`: (whether this generation holds it, its position in `self.ids`)."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(self.ids) == 0:
            return np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=np.int64)
        where = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return self.ids[where] == ids, where

    def stamp_of(self, article_id: int) -> int | None:
        found, where = self.positions(np.array([article_id]))
        return int(self.stamps[where[0]]) if found[0] else None


def current_generation(directory: Path) -> str | None:
    """The generation the pointer names, or None without a readable pointer (a cheap check, no checksum)."""
    try:
        return json.loads((directory / POINTER).read_text()).get("generation")
    except (OSError, ValueError, AttributeError):
        return None


def write(
    directory: Path, index: faiss.Index, ids: np.ndarray, stamps: np.ndarray, *, database: str, watermark: int | None
) -> str:
    """Write a new generation (index file, rows file, then the pointer, each atomically); returns its name.

    Other generations' files are deleted afterwards: processes that map them keep reading them.
    """
    directory.mkdir(parents=True, exist_ok=True)
    generation = f"{time.time_ns():x}-{secrets.token_hex(4)}"
    index_path = directory / f"{generation}.faiss"
    rows_path = directory / f"{generation}.rows.npy"
    order = np.argsort(ids, kind="stable")
    rows = np.stack([np.asarray(ids, dtype=np.int64)[order], np.asarray(stamps, dtype=np.int64)[order]])
    _atomic(index_path, lambda name: faiss.write_index(index, name))
    _atomic(rows_path, lambda name: _save_rows(name, rows))
    meta = {
        "format": FILE_FORMAT,
        "dim": EMBEDDING_DIM,
        "database": database,
        "generation": generation,
        "count": int(rows.shape[1]),
        "watermark": watermark,
        "sha256": {"index": _digest(index_path), "rows": _digest(rows_path)},
    }
    _atomic(directory / POINTER, lambda name: Path(name).write_text(json.dumps(meta)))
    for old in directory.iterdir():
        if old.name != POINTER and not old.name.startswith(generation) and not old.name.endswith(".tmp"):
            old.unlink(missing_ok=True)
    return generation


def read(directory: Path, *, database: str) -> Base:
    """The current generation, mapped read-only; IndexFileError if it is unusable or foreign.
    FileNotFoundError (no pointer yet) passes through."""
    pointer = directory / POINTER
    try:
        meta = json.loads(pointer.read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as error:
        raise IndexFileError(f"{pointer}: unreadable ({error})") from error
    if meta.get("format") != FILE_FORMAT:
        raise IndexFileError(f"{pointer}: format {meta.get('format')!r}, expected {FILE_FORMAT}")
    if meta.get("dim") != EMBEDDING_DIM:
        raise IndexFileError(f"{pointer}: {meta.get('dim')}-d vectors, this model makes {EMBEDDING_DIM}-d")
    if meta.get("database") != database:
        raise IndexFileError(f"{pointer}: built from {meta.get('database')}, not {database}")
    generation = str(meta["generation"])
    index_path = directory / f"{generation}.faiss"
    rows_path = directory / f"{generation}.rows.npy"
    try:
        digests = {"index": _digest(index_path), "rows": _digest(rows_path)}
    except FileNotFoundError as error:
        raise IndexFileError(f"{pointer}: names a missing file ({error.filename})") from error
    if digests != meta.get("sha256"):
        raise IndexFileError(f"{directory}: checksum mismatch in generation {generation}")
    try:
        index = faiss.read_index(str(index_path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        rows = np.load(rows_path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # noqa: BLE001 - FAISS raises RuntimeError, numpy ValueError on a bad file
        raise IndexFileError(f"{directory}: generation {generation} unreadable ({error})") from error
    if index.d != EMBEDDING_DIM or rows.shape != (2, index.ntotal):
        raise IndexFileError(f"{directory}: {index.ntotal} vectors for rows of shape {rows.shape}")
    faiss.extract_index_ivf(index).nprobe = settings.VECTOR_INDEX_IVF_NPROBE
    return Base(index, rows[0], rows[1], generation, meta.get("watermark"), database)


def _atomic(target: Path, write_to: object) -> None:
    """Call `write_to(temp name)` for a temp file beside `target`, fsync it, rename it over `target`."""
    handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".tmp", delete=False)
    handle.close()
    try:
        write_to(handle.name)  # type: ignore[operator]
        with open(handle.name, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(handle.name, target)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def _save_rows(name: str, rows: np.ndarray) -> None:
    with open(name, "wb") as handle:  # a handle, or numpy would append .npy to the temp name
        np.save(handle, rows, allow_pickle=False)


def _digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
