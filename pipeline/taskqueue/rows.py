"""A task record's row: one transition of a message, and how two rows of one message merge.

Rows of the same message merge in memory (`merge_rows`) with exactly the rules the SQL upsert
(pipeline.taskqueue.upsert) applies in Postgres, so the final record is right whatever order the
producer's and the workers' writes land in: status only moves forward.
"""

from __future__ import annotations

import json
import os
import socket
import traceback as tb
from datetime import UTC, datetime
from typing import Any, TypedDict

import dramatiq
from dramatiq.broker import MessageProxy

from pipeline.taskqueue.names import ATTEMPT_OFFSET_OPTION, FINISHED_RANK, STATUS_RANK

RESULT_MAX_BYTES = 16 * 1024
TEXT_MAX_CHARS = 10_000

# A message as producers have it, or as a worker holds it during one delivery.
AnyMessage = dramatiq.Message[Any] | MessageProxy

_worker_name: tuple[int, str] | None = None


def worker_name() -> str:
    """host:pid of this process (recomputed after a fork)."""
    global _worker_name
    pid = os.getpid()
    if _worker_name is None or _worker_name[0] != pid:
        _worker_name = (pid, f"{socket.gethostname()}:{pid}"[:200])
    return _worker_name[1]


def without_nul(value: Any) -> Any:
    """Postgres text and jsonb cannot hold U+0000: replace it, recursively."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [without_nul(v) for v in value]
    if isinstance(value, dict):
        return {without_nul(k): without_nul(v) for k, v in value.items()}
    return value


def cap_result(value: Any) -> str | None:
    """JSON text of an actor's return value, replaced by a marked preview when too big or not JSON."""
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return json.dumps({"truncated": True, "reason": "not JSON-serialisable", "preview": _preview(value)})
    if "\\u0000" in text:
        text = json.dumps(without_nul(value))
    if len(text) > RESULT_MAX_BYTES:
        return json.dumps({"truncated": True, "reason": f"{len(text)} bytes", "preview": text[:1000]})
    return text


def _preview(value: Any) -> str:
    try:
        return repr(value)[:1000].replace("\x00", "\ufffd")
    except Exception:  # noqa: BLE001 - a broken __repr__ must not crash the worker
        return f"<unrepresentable {type(value).__name__}>"


class Row:
    """One transition of a message, or several merged: the columns of a TaskRecord upsert."""

    __slots__ = (
        "message_id",
        "actor_name",
        "queue_name",
        "args",
        "kwargs",
        "origin",
        "retry_of",
        "status",
        "attempt",
        "rank",
        "outcome_key",
        "enqueued_at",
        "started_at",
        "finished_at",
        "worker",
        "result",
        "error_type",
        "error_message",
        "traceback",
        "added",
        "urgent",
    )

    def __init__(
        self,
        message: AnyMessage,
        status: str,
        attempt: int,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        worker: str = "",
        result: str | None = None,
        error_type: str = "",
        error_message: str = "",
        traceback: str = "",
    ) -> None:
        options = message.options
        self.message_id = message.message_id
        self.actor_name = message.actor_name[:200]
        queue_name = message.queue_name
        self.queue_name = (queue_name[:-3] if queue_name.endswith(".DQ") else queue_name)[:200]
        # Encoded to JSON when written, not here: enqueue is the hot path.
        self.args = message.args
        self.kwargs = message.kwargs
        self.origin = str(options.get("origin", ""))[:32]
        self.retry_of = str(options.get("retry_of", ""))[:36]
        self.status = status
        self.attempt = attempt
        self.rank = STATUS_RANK[status]
        self.outcome_key = attempt * 8 + self.rank if self.rank >= FINISHED_RANK else 0
        # The message's creation time: the producer and every worker agree on it.
        self.enqueued_at = datetime.fromtimestamp(message.message_timestamp / 1000, UTC)
        self.started_at = started_at
        self.finished_at = finished_at
        self.worker = worker
        self.result = result
        self.error_type = error_type[:200]
        self.error_message = error_message
        self.traceback = traceback
        self.added = 0.0
        self.urgent = False


def merge_rows(old: Row, new: Row) -> Row:
    """Fold `new` into `old` (in place) with exactly the rules of the SQL upsert below."""
    if new.attempt > old.attempt:
        old.started_at, old.worker = new.started_at, new.worker
    elif new.attempt == old.attempt:
        take_worker = new.worker != "" and (
            old.worker == ""
            or (new.started_at is not None and old.started_at is not None and new.started_at > old.started_at)
        )
        if take_worker:
            old.worker = new.worker
        if new.started_at is not None and (old.started_at is None or new.started_at > old.started_at):
            old.started_at = new.started_at
    if (new.attempt, new.rank) > (old.attempt, old.rank):
        old.status, old.rank = new.status, new.rank
    old.attempt = max(old.attempt, new.attempt)
    if new.enqueued_at is not None and (old.enqueued_at is None or new.enqueued_at < old.enqueued_at):
        old.enqueued_at = new.enqueued_at
    if new.outcome_key > old.outcome_key:
        old.outcome_key = new.outcome_key
        old.finished_at, old.result = new.finished_at, new.result
        old.error_type, old.error_message, old.traceback = new.error_type, new.error_message, new.traceback
    old.urgent = old.urgent or new.urgent
    return old


def message_attempt(message: AnyMessage) -> int:
    options = message.options
    return options.get("retries", 0) + 1 + options.get(ATTEMPT_OFFSET_OPTION, 0)


class ErrorFields(TypedDict):
    error_type: str
    error_message: str
    traceback: str


def error_fields(exception: BaseException) -> ErrorFields:
    try:
        message = str(exception)
    except Exception:  # noqa: BLE001 - a broken __str__ must not crash the worker
        message = f"<unprintable {type(exception).__name__}>"
    return {
        "error_type": type(exception).__name__,
        "error_message": message[:TEXT_MAX_CHARS],
        "traceback": "".join(tb.format_exception(exception))[-TEXT_MAX_CHARS:],
    }
