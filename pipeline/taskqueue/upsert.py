"""Writing task-record rows to Postgres: one multi-row upsert per batch, whose column rules do not
depend on the order batches land in."""

from __future__ import annotations

import json
import logging
from functools import cache
from typing import Any

import psycopg
from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction

from pipeline.taskqueue.rows import TEXT_MAX_CHARS, Row, without_nul

logger = logging.getLogger(__name__)


# Rows arrive as parallel arrays (one statement, one round trip per batch). Every column is merged so
# that the result does not depend on the order batches land in:
# - status/attempt/rank: the greatest (attempt, rank) wins: status only moves forward;
# - started_at/worker: those of the latest attempt (the latest start within it: a re-run after a crash);
# - finished_at/result/error_*: those of the greatest outcome_key (attempt * 8 + final rank);
# - enqueued_at: the earliest; the message's identity (actor, queue, arguments, origin) never changes.
_INSERT = """
INSERT INTO {table} AS t (
    message_id, actor_name, queue_name, args, kwargs, origin, retry_of, status, attempt, status_rank,
    outcome_key, enqueued_at, started_at, finished_at, worker, result, error_type, error_message, traceback
)"""
_ON_CONFLICT = """
ON CONFLICT (message_id) DO UPDATE SET
    status = CASE WHEN (EXCLUDED.attempt, EXCLUDED.status_rank) > (t.attempt, t.status_rank)
                  THEN EXCLUDED.status ELSE t.status END,
    status_rank = CASE WHEN (EXCLUDED.attempt, EXCLUDED.status_rank) > (t.attempt, t.status_rank)
                       THEN EXCLUDED.status_rank ELSE t.status_rank END,
    attempt = GREATEST(t.attempt, EXCLUDED.attempt),
    enqueued_at = LEAST(t.enqueued_at, EXCLUDED.enqueued_at),
    started_at = CASE WHEN EXCLUDED.attempt > t.attempt THEN EXCLUDED.started_at
                      WHEN EXCLUDED.attempt = t.attempt THEN GREATEST(t.started_at, EXCLUDED.started_at)
                      ELSE t.started_at END,
    worker = CASE WHEN EXCLUDED.attempt > t.attempt THEN EXCLUDED.worker
                  WHEN EXCLUDED.attempt = t.attempt AND EXCLUDED.worker <> ''
                       AND (t.worker = '' OR EXCLUDED.started_at > t.started_at) THEN EXCLUDED.worker
                  ELSE t.worker END,
    outcome_key = GREATEST(t.outcome_key, EXCLUDED.outcome_key),
    finished_at = CASE WHEN EXCLUDED.outcome_key > t.outcome_key THEN EXCLUDED.finished_at ELSE t.finished_at END,
    result = CASE WHEN EXCLUDED.outcome_key > t.outcome_key THEN EXCLUDED.result ELSE t.result END,
    error_type = CASE WHEN EXCLUDED.outcome_key > t.outcome_key THEN EXCLUDED.error_type ELSE t.error_type END,
    error_message = CASE WHEN EXCLUDED.outcome_key > t.outcome_key
                         THEN EXCLUDED.error_message ELSE t.error_message END,
    traceback = CASE WHEN EXCLUDED.outcome_key > t.outcome_key THEN EXCLUDED.traceback ELSE t.traceback END
"""


# The whole batch travels as one JSON parameter (a list of objects that leave out empty columns):
# json.dumps is C code, while adapting one Python list per column cost ~0.5 ms per batch.
_VALUES = """
SELECT m, a, q, COALESCE(ar, '[]'), COALESCE(kw, '{}'), COALESCE(o, ''), COALESCE(r, ''), s, n, k,
       COALESCE(ok, 0), e, st, fi, COALESCE(w, ''), re::jsonb, COALESCE(et, ''), COALESCE(em, ''), COALESCE(tb, '')
FROM json_to_recordset(%s::json) AS v(
    m varchar, a varchar, q varchar, ar jsonb, kw jsonb, o varchar, r varchar, s varchar, n int, k smallint,
    ok int, e timestamptz, st timestamptz, fi timestamptz, w varchar, re text, et varchar, em text, tb text
)"""


@cache
def _upsert_sql() -> str:
    # The table name from the model, read once the app registry is ready (this module is imported
    # with Dramatiq's middleware, while it is still loading).
    table = apps.get_model("pipeline", "TaskRecord")._meta.db_table
    return (_INSERT + _VALUES + _ON_CONFLICT).replace("{table}", table)


def _as_json(row: Row) -> dict[str, Any]:
    item: dict[str, Any] = {
        "m": row.message_id,
        "a": row.actor_name,
        "q": row.queue_name,
        "s": row.status,
        "n": row.attempt,
        "k": row.rank,
        "e": row.enqueued_at.isoformat(),
    }
    if row.args:
        item["ar"] = row.args
    if row.kwargs:
        item["kw"] = row.kwargs
    if row.origin:
        item["o"] = row.origin
    if row.retry_of:
        item["r"] = row.retry_of
    if row.started_at is not None:
        item["st"] = row.started_at.isoformat()
    if row.worker:
        item["w"] = row.worker
    if row.outcome_key:
        item["ok"] = row.outcome_key
        if row.finished_at is not None:
            item["fi"] = row.finished_at.isoformat()
        if row.result is not None:
            item["re"] = row.result  # already JSON text (cap_result): cast to jsonb in SQL
        if row.error_type:
            item["et"] = row.error_type
        if row.error_message:
            item["em"] = row.error_message[:TEXT_MAX_CHARS]
        if row.traceback:
            item["tb"] = row.traceback[-TEXT_MAX_CHARS:]
    return item


def batch_json(rows: list[Row]) -> str:
    """The JSON parameter of one upsert. Postgres text and jsonb cannot hold U+0000: replaced."""
    items = [_as_json(r) for r in rows]
    text = json.dumps(items, default=repr)
    if "\\u0000" in text:
        text = json.dumps(without_nul(items), default=repr)
    return text


def upsert_rows(rows: list[Row], *, own_connection: bool = False) -> None:
    """One multi-row upsert. Rows are sorted by message id so that concurrent writers lock rows in the
    same order and cannot deadlock.

    Committed asynchronously unless TASK_RECORD_SYNCHRONOUS_COMMIT: a commit then waits for no disk
    flush (~3.5 ms here, which would otherwise cap a worker at a handful of tasks per flush). A crash of
    a worker or web process loses nothing Postgres has acknowledged; only a crash of Postgres itself (or
    of its machine) can lose the last ~0.6 s of record updates (3 x wal_writer_delay).

    `own_connection`: the calling thread's connection writes nothing else (the writer thread), so it
    is set up once for asynchronous commits and runs the statements prepared (planned once)."""
    sql = _upsert_sql()
    params = [batch_json(sorted(rows, key=lambda r: r.message_id))]
    synchronous = settings.TASK_RECORD_SYNCHRONOUS_COMMIT
    if own_connection and not connection.in_atomic_block:
        connection.ensure_connection()
        raw = connection.connection
        with connection.wrap_database_errors:
            if not synchronous and getattr(raw, "_newsrec_async_commit", False) is False:
                raw.execute("SET synchronous_commit TO OFF")
                raw._newsrec_async_commit = True
            with psycopg.Cursor(raw) as cursor:
                cursor.execute(sql, params, prepare=True)
    elif connection.in_atomic_block:
        # Inside someone's transaction (a test, an atomic block): a failed write must not break it, and
        # its commit, and so its durability, belong to that transaction.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    elif synchronous:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF", None)
            cursor.execute(sql, params)


def write_rows(rows: list[Row], *, own_connection: bool = False) -> bool:
    """Write rows; returns False when Postgres is unreachable (the caller keeps them for a retry).
    A row that Postgres refuses for what it holds is logged and dropped, never retried forever."""
    try:
        upsert_rows(rows, own_connection=own_connection)
        return True
    except (OperationalError, InterfaceError):
        logger.warning("could not write %d task records; will retry", len(rows), exc_info=True)
        connection.close_if_unusable_or_obsolete()
        return False
    except DatabaseError:
        if len(rows) == 1:
            logger.exception("dropped the task record update of message %s", rows[0].message_id)
            return True
    # One bad row: write them one by one so that only it is lost.
    ok = True
    for row in rows:
        ok = write_rows([row], own_connection=own_connection) and ok
    return ok
