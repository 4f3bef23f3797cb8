"""Deleting old task records in small batches, so that the purge never holds long locks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection

from pipeline.taskqueue.models import TaskRecord

_TABLE = TaskRecord._meta.db_table
_DELETE_BATCH = f"""
DELETE FROM {_TABLE} WHERE id IN (
    SELECT id FROM {_TABLE} WHERE enqueued_at < %s ORDER BY enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED
)
"""


def purge_task_records(*, older_than: timedelta | None = None, batch_size: int | None = None) -> int:
    """Delete records enqueued before now - older_than (default TASK_RECORD_RETENTION_DAYS); returns
    how many. Each batch is its own short transaction; rows a writer holds are skipped (next run)."""
    if older_than is None:
        older_than = timedelta(days=settings.TASK_RECORD_RETENTION_DAYS)
    batch_size = batch_size or settings.TASK_RECORD_PURGE_BATCH_SIZE
    cutoff = datetime.now(UTC) - older_than
    deleted = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(_DELETE_BATCH, [cutoff, batch_size])
            count = cursor.rowcount
        deleted += count
        if count < batch_size:
            return deleted
