"""Dramatiq middleware that keeps one TaskRecord row per message id.

Every transition is one upsert whose WHERE clause lets (attempt, status rank) only grow, so the
final row is right whatever order the producer's and the workers' writes reach Postgres in.
A failed record write is logged and never fails the message itself.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import traceback as tb
from datetime import UTC, datetime
from typing import Any

import dramatiq
from django.db import connection
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


class Status:
    # The values of TaskRecord.Status; not imported from the model because Dramatiq middleware is
    # built while Django's app registry is still loading.
    DELAYED = "delayed"
    ENQUEUED = "enqueued"
    RETRYING = "retrying"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


# Within one attempt a message goes delayed → enqueued → running → finished; a retry starts the
# next attempt. A delayed retry being moved onto its queue (status "enqueued") has the same rank as
# "retrying", so the row keeps saying "retrying" until a worker picks it up.
STATUS_RANK = {
    Status.DELAYED: 0,
    Status.ENQUEUED: 1,
    Status.RETRYING: 1,
    Status.RUNNING: 2,
    Status.SUCCEEDED: 3,
    Status.FAILED: 3,
    Status.SKIPPED: 3,
}

RESULT_MAX_BYTES = 16 * 1024
TEXT_MAX_CHARS = 10_000

WORKER_NAME = f"{socket.gethostname()}:{os.getpid()}"

_UPSERT = """
INSERT INTO pipeline_taskrecord (
    message_id, actor_name, queue_name, args, kwargs, status, attempt, status_rank, origin,
    enqueued_at, started_at, finished_at, worker, result, error_type, error_message, traceback
) VALUES (
    %(message_id)s, %(actor_name)s, %(queue_name)s, %(args)s, %(kwargs)s, %(status)s, %(attempt)s,
    %(rank)s, %(origin)s, %(enqueued_at)s, %(started_at)s, %(finished_at)s, %(worker)s, %(result)s,
    %(error_type)s, %(error_message)s, %(traceback)s
)
ON CONFLICT (message_id) DO UPDATE SET
    status = EXCLUDED.status,
    attempt = EXCLUDED.attempt,
    status_rank = EXCLUDED.status_rank,
    enqueued_at = COALESCE(pipeline_taskrecord.enqueued_at, EXCLUDED.enqueued_at),
    started_at = COALESCE(EXCLUDED.started_at, pipeline_taskrecord.started_at),
    finished_at = EXCLUDED.finished_at,
    worker = COALESCE(NULLIF(EXCLUDED.worker, ''), pipeline_taskrecord.worker),
    result = EXCLUDED.result,
    error_type = CASE WHEN EXCLUDED.status_rank = 3 THEN EXCLUDED.error_type ELSE pipeline_taskrecord.error_type END,
    error_message = CASE WHEN EXCLUDED.status_rank = 3 THEN EXCLUDED.error_message
                         ELSE pipeline_taskrecord.error_message END,
    traceback = CASE WHEN EXCLUDED.status_rank = 3 THEN EXCLUDED.traceback ELSE pipeline_taskrecord.traceback END
WHERE (pipeline_taskrecord.attempt, pipeline_taskrecord.status_rank) < (EXCLUDED.attempt, EXCLUDED.status_rank)
"""


def _now() -> datetime:
    return datetime.now(UTC)


def cap_result(value: Any) -> str | None:
    """JSON text of an actor's return value, replaced by a marked preview when too big or not JSON."""
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps({"truncated": True, "reason": "not JSON-serialisable", "preview": repr(value)[:1000]})
    if len(text) > RESULT_MAX_BYTES:
        return json.dumps({"truncated": True, "reason": f"{len(text)} bytes", "preview": text[:1000]})
    return text


def _strip_dq(queue_name: str) -> str:
    return queue_name[:-3] if queue_name.endswith(".DQ") else queue_name


def write_transition(message: dramatiq.Message, status: str, **fields: Any) -> None:
    """Upsert one transition of `message`; logged, never raised, when the database is unreachable."""
    row = {
        "message_id": message.message_id,
        "actor_name": message.actor_name,
        "queue_name": _strip_dq(message.queue_name),
        "args": json.dumps(list(message.args)),
        "kwargs": json.dumps(message.kwargs),
        "status": status,
        "attempt": message.options.get("retries", 0) + 1,
        "rank": STATUS_RANK[status],
        "origin": str(message.options.get("origin", ""))[:32],
        "enqueued_at": None,
        "started_at": None,
        "finished_at": None,
        "worker": "",
        "result": None,
        "error_type": "",
        "error_message": "",
        "traceback": "",
    }
    row.update(fields)
    try:
        with connection.cursor() as cursor:
            cursor.execute(_UPSERT, row)
    except Exception:  # noqa: BLE001 - a lost record must never lose the message
        logger.warning("could not record %s of message %s", status, message.message_id, exc_info=True)


class TaskRecordMiddleware(Middleware):
    @property
    def actor_options(self) -> set[str]:
        return {"origin"}

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if message.options.get("retries", 0) > 0:
            status = Status.RETRYING
        elif delay:
            status = Status.DELAYED
        else:
            status = Status.ENQUEUED
        write_transition(message, status, enqueued_at=_now())

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        write_transition(message, Status.RUNNING, started_at=_now(), worker=WORKER_NAME)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            write_transition(message, Status.SUCCEEDED, finished_at=_now(), result=cap_result(result))
            return
        # Written as failed; if Retries sends the message again, the retry's enqueue (next attempt)
        # moves the row on to "retrying".
        write_transition(
            message,
            Status.FAILED,
            finished_at=_now(),
            error_type=type(exception).__name__,
            error_message=str(exception)[:TEXT_MAX_CHARS],
            traceback="".join(tb.format_exception(exception))[-TEXT_MAX_CHARS:],
        )

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        write_transition(message, Status.SKIPPED, finished_at=_now(), error_message="skipped (age limit)")

