"""A task record made directly in the database, for tests of what reads records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pipeline.taskqueue.models import TaskRecord


def record(status: str = "succeeded", **fields: object) -> TaskRecord:
    defaults = {
        "message_id": str(uuid.uuid4()),
        "actor_name": "scrape_feed",
        "queue_name": "scraping",
        "args": [7],
        "kwargs": {},
        "status": status,
        "status_rank": {"enqueued": 1, "running": 2}.get(status, 3),
        "origin": "api",
        "enqueued_at": datetime.now(UTC),
    }
    return TaskRecord.objects.create(**{**defaults, **fields})
