"""Reading the vector index's rows from Postgres, the only truth: live ids, their stamps, their vectors."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import psycopg
from django.db import connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper

from articles.models import Article
from pipeline.understanding.embedding import EMBEDDING_DIM, vector_from_bytes

logger = logging.getLogger(__name__)

# Rows are read from Postgres in chunks this size (1,536 bytes of embedding each).
READ_CHUNK = 5000
STAMP_SLICE = 50_000

_TABLE = Article._meta.db_table
# processed_at as integer microseconds, computed in SQL everywhere so stamps compare exactly.
_STAMP_SQL = "(extract(epoch from processed_at) * 1000000)::bigint"
_LIVE_SQL = f"status = '{Article.Status.PROCESSED}' AND embedding IS NOT NULL AND processed_at IS NOT NULL"


def database_label() -> str:
    """Which database a file was built from: a file from another one is foreign even with matching ids."""
    db = connection.settings_dict
    return f"{db.get('HOST') or 'localhost'}:{db.get('PORT') or ''}/{db.get('NAME')}"


def newest_stamp() -> int | None:
    """The newest live row's stamp: how far the index could have caught up (readiness reports the gap)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT max({_STAMP_SQL}) FROM {_TABLE} WHERE {_LIVE_SQL}")
        [stamp] = cursor.fetchone()
    return int(stamp) if stamp is not None else None


def live_count() -> int:
    """How many articles the index should hold: chooses the kind a process starts with."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {_TABLE} WHERE {_LIVE_SQL}")
        return int(cursor.fetchone()[0])


def fetch_stamps(since_stamp: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, stamps) of live rows, all of them or those with processed_at past `since_stamp`."""
    sql = f"SELECT id, {_STAMP_SQL} FROM {_TABLE} WHERE {_LIVE_SQL}"
    params: list[Any] = []
    if since_stamp is not None:
        # Written as a timestamp comparison so the processed_at index serves it.
        sql += " AND processed_at > to_timestamp(%s / 1000000.0)"
        params.append(since_stamp)
    # Streamed from a server-side cursor in slices into arrays: a million rows fetched at once (libpq's
    # result, then Python tuples) left over 100 MB behind in every process that reconciles.
    parts: list[np.ndarray] = []
    with transaction.atomic(), connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(STAMP_SLICE):
            parts.append(np.array(rows, dtype=np.int64))
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    array = np.concatenate(parts)
    return array[:, 0].copy(), array[:, 1].copy()


def _binary_cursor() -> Any:
    """A Django cursor whose results come in binary: embeddings as their bytes, not as hex text that
    Postgres encodes and psycopg decodes again (half the time of a search's re-rank read of ~100
    embeddings). Django's own cursors bind client-side, which psycopg allows text results only for; this
    one is psycopg's server-binding cursor in Django's wrapper, so queries are still logged and counted."""
    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
    return wrapper(raw, connection)


def fetch_vectors(ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, stamps) of those of `ids` that are live, in chunks; ids missing are left out."""
    out_ids: list[int] = []
    out_stamps: list[int] = []
    vectors: list[np.ndarray] = []
    ids = [int(i) for i in ids]
    for start in range(0, len(ids), READ_CHUNK):
        chunk = ids[start : start + READ_CHUNK]
        with _binary_cursor() as cursor:
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


def fetch_candidates(
    vector_ids: Collection[int], check_ids: Collection[int] = ()
) -> tuple[dict[int, np.ndarray], set[int]]:
    """({id: vector} of the live ones of `vector_ids`, the live ones of `check_ids`), in one query.

    For a search: its compressed candidates need their exact vectors, the hits it scored from vectors it
    holds only a word that they are still live, so their embeddings stay in Postgres.
    """
    vector_ids = sorted({int(i) for i in vector_ids})
    everything = sorted(set(vector_ids) | {int(i) for i in check_ids})
    vectors: dict[int, np.ndarray] = {}
    live: set[int] = set()
    for start in range(0, len(everything), READ_CHUNK):
        with _binary_cursor() as cursor:
            cursor.execute(
                f"SELECT id, CASE WHEN id = ANY(%s) THEN embedding END FROM {_TABLE} WHERE {_LIVE_SQL} AND id = ANY(%s)",
                [vector_ids, everything[start : start + READ_CHUNK]],
            )
            for article_id, data in cursor.fetchall():
                if data is None:
                    live.add(article_id)
                    continue
                try:
                    vectors[article_id] = vector_from_bytes(data)
                except ValueError:
                    logger.warning("article %s has a malformed embedding; left out of the index", article_id)
    return vectors, live


def live_article_ids(ids: Collection[int]) -> set[int]:
    """Those of `ids` that are still processed articles with an embedding."""
    if not ids:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM {_TABLE} WHERE {_LIVE_SQL} AND id = ANY(%s)", [list(ids)])
        return {row[0] for row in cursor.fetchall()}
