"""Dramatiq middleware that keeps one TaskRecord row per message id, written off the hot path in batches.

Every transition of a message (enqueued, running, succeeded, ...) becomes a `Row` in this process's
`RecordBuffer`. Rows of the same message merge in memory, and the buffer writes what it holds as one
multi-row upsert. Both the in-memory merge and the upsert combine each column with rules that do not
depend on order (see `merge_rows` and `_UPSERT`), so the final record is right whatever order the
producer's and the workers' batches reach Postgres in: status only moves forward.

When rows are written:

- In `dramatiq`/`rundramatiq` worker processes a background thread writes them (group commit). Final
  transitions are written at once, and a worker acknowledges a message to Redis only after its final
  transition is in Postgres (`before_ack`/`before_nack` wait for it). A worker that dies loses only
  updates of messages it had not acknowledged, which Redis hands to another worker: the re-run writes
  them again, so the record converges. "running" rows wait up to `TASK_RECORD_FLUSH_INTERVAL_MS` so
  that a short task's start and finish merge into one write.
- Everywhere else (web, scheduler, management commands, tests) rows are written by the thread that
  added them: once `TASK_RECORD_BATCH_SIZE` rows are pending or the oldest is older than the flush
  interval, at the end of every HTTP request (`flush_task_records_middleware`), after every scheduler
  job, and at process exit. A producer that dies before a flush loses its "enqueued" rows; the message
  itself is in Redis, and the worker's rows create the record when it runs.

A failed record write is logged and retried, and never fails or holds up the message itself.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import threading
import time
import traceback as tb
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import dramatiq
import psycopg
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse
from dramatiq.middleware import Middleware, SkipMessage

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
    DEAD_LETTERED = "dead-lettered"


# Within one attempt a message goes delayed → enqueued → running → finished (→ dead-lettered when it
# is rejected to the dead-letter queue); a retry starts the next attempt. A delayed retry being moved
# onto its queue (status "enqueued") has the same rank as "retrying", so the row keeps saying
# "retrying" until a worker picks it up.
STATUS_RANK = {
    Status.DELAYED: 0,
    Status.ENQUEUED: 1,
    Status.RETRYING: 1,
    Status.RUNNING: 2,
    Status.SUCCEEDED: 3,
    Status.FAILED: 3,
    Status.SKIPPED: 3,
    Status.DEAD_LETTERED: 4,
}
FINISHED_RANK = 3
# Message option set when a dead-lettered message is requeued: the attempts it already had, so the
# requeued run counts on from them and its record moves forward (pipeline.dead_letters).
ATTEMPT_OFFSET_OPTION = "attempt_offset"

RESULT_MAX_BYTES = 16 * 1024
TEXT_MAX_CHARS = 10_000
WAIT_TIMEOUT_SECONDS = 10.0

_worker_name: tuple[int, str] | None = None


def worker_name() -> str:
    """host:pid of this process (recomputed after a fork)."""
    global _worker_name
    pid = os.getpid()
    if _worker_name is None or _worker_name[0] != pid:
        _worker_name = (pid, f"{socket.gethostname()}:{pid}"[:200])
    return _worker_name[1]


def _now() -> datetime:
    return datetime.now(UTC)


def _without_nul(value: Any) -> Any:
    """Postgres text and jsonb cannot hold U+0000: replace it, recursively."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
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
        text = json.dumps(_without_nul(value))
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
        message: dramatiq.Message,
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


# Rows arrive as parallel arrays (one statement, one round trip per batch). Every column is merged so
# that the result does not depend on the order batches land in:
# - status/attempt/rank: the greatest (attempt, rank) wins: status only moves forward;
# - started_at/worker: those of the latest attempt (the latest start within it: a re-run after a crash);
# - finished_at/result/error_*: those of the greatest outcome_key (attempt * 8 + final rank);
# - enqueued_at: the earliest; the message's identity (actor, queue, arguments, origin) never changes.
_INSERT = """
INSERT INTO pipeline_taskrecord AS t (
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
_UPSERT = _INSERT + _VALUES + _ON_CONFLICT


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
        text = json.dumps(_without_nul(items), default=repr)
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
    sql = _UPSERT
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


class RecordBuffer:
    """This process's pending task-record rows, one per message id, and who writes them when."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        # One lock, two conditions: the writer thread waits on _work, threads waiting for their rows
        # to be written wait on _done (so a new row does not wake every waiting worker thread).
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._pending: dict[str, Row] = {}
        self._writing: set[str] = set()
        self._first_added = 0.0
        self._failures = 0
        self._healthy = True  # False from a failed write until one succeeds: nobody waits meanwhile
        self._dropped = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def interval(self) -> float:
        return getattr(settings, "TASK_RECORD_FLUSH_INTERVAL_MS", 150) / 1000

    @property
    def batch_size(self) -> int:
        return getattr(settings, "TASK_RECORD_BATCH_SIZE", 500)

    @property
    def max_pending(self) -> int:
        return getattr(settings, "TASK_RECORD_MAX_PENDING", 200_000)

    @property
    def background(self) -> bool:
        return self._thread is not None

    def pending_count(self) -> int:
        return len(self._pending)

    def discard_pending(self) -> int:
        """Forget the rows not yet written (tests: rows a test left inside its rolled-back transaction
        must not land in the next test). Returns how many."""
        with self._lock:
            count = len(self._pending)
            self._pending = {}
            return count

    def add(self, row: Row) -> None:
        now = time.monotonic()
        with self._lock:
            old = self._pending.get(row.message_id)
            if old is not None:
                merge_rows(old, row)
            elif len(self._pending) >= self.max_pending:
                # Postgres has been unreachable for long: keep the worker's memory bounded.
                self._dropped += 1
                if self._dropped % 10_000 == 1:
                    logger.error("task record buffer full: %d updates dropped so far", self._dropped)
                return
            else:
                if not self._pending:
                    self._first_added = now
                row.added = now
                self._pending[row.message_id] = row
            if self._thread is not None:
                if row.rank >= FINISHED_RANK:
                    self._work.notify()
                return
            due = len(self._pending) >= self.batch_size or now - self._first_added >= self.interval
        if due and not connection.in_atomic_block:
            self.flush()

    def wait_for(self, message_id: str) -> None:
        """Return once this message's pending rows are in Postgres (or a write failed, or a timeout)."""
        with self._lock:
            if message_id not in self._pending and message_id not in self._writing:
                return
            if self._thread is None and message_id in self._pending:
                inline = True
            else:
                inline = False
                row = self._pending.get(message_id)
                if row is not None:
                    row.urgent = True
                    self._work.notify()
                if not self._healthy:
                    return  # Postgres is unreachable: the row stays pending for the writer's retries
                failures = self._failures
                deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
                while (message_id in self._pending or message_id in self._writing) and failures == self._failures:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        logger.warning("gave up waiting for the record of message %s", message_id)
                        break
                    self._done.wait(remaining)
        if inline:
            self.flush()

    def flush(self) -> None:
        """Write everything pending now; in a worker process, wait for the writer thread to do it."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            with self._lock:
                ids = list(self._pending)
                for row in self._pending.values():
                    row.urgent = True
                self._work.notify()
            for message_id in ids:
                self.wait_for(message_id)
            return
        with self._lock:
            batch = list(self._pending.values())
            self._pending = {}
            self._writing.update(self._ids(batch))
        if batch:
            self._write(batch)

    @staticmethod
    def _ids(rows: Iterable[Row]) -> list[str]:
        return [r.message_id for r in rows]

    def _write(self, batch: list[Row]) -> bool:
        ok = True
        own_connection = threading.current_thread() is self._thread
        step = max(self.batch_size, 1) * 4
        for start in range(0, len(batch), step):
            try:
                ok = write_rows(batch[start : start + step], own_connection=own_connection) and ok
            except Exception:  # noqa: BLE001 - a bug here must not lose the rows nor strand their waiters
                logger.exception("could not write task records; will retry")
                ok = False
        with self._lock:
            self._writing.difference_update(self._ids(batch))
            self._healthy = ok
            if not ok:
                # Kept for the next flush: merged under any newer rows of the same messages.
                self._failures += 1
                for row in batch:
                    row.urgent = False
                    newer = self._pending.get(row.message_id)
                    self._pending[row.message_id] = merge_rows(row, newer) if newer else row
                    if not newer and len(self._pending) == 1:
                        self._first_added = time.monotonic()
            self._done.notify_all()
        return ok

    # --- the writer thread of worker processes ---

    def start_background(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="task-record-writer", daemon=True)
            self._thread.start()

    def stop_background(self, timeout: float = 30.0) -> None:
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._work.notify()
        thread.join(timeout)
        with self._lock:
            self._thread = None
        self.flush()

    def _take_due(self, now: float) -> tuple[list[Row], float | None]:
        """Rows to write now (final or waited for or old enough), and when the next one falls due."""
        due: list[Row] = []
        next_due: float | None = None
        interval = self.interval
        for row in self._pending.values():
            if self._stopping or row.urgent or row.rank >= FINISHED_RANK or now - row.added >= interval:
                due.append(row)
            else:
                at = row.added + interval - now
                next_due = at if next_due is None else min(next_due, at)
        for row in due:
            del self._pending[row.message_id]
        self._writing.update(self._ids(due))
        return due, next_due

    def _run(self) -> None:
        backoff = 0.0
        try:
            while True:
                with self._lock:
                    while True:
                        batch, next_due = self._take_due(time.monotonic())
                        if batch:
                            break
                        if self._stopping:
                            return
                        self._work.wait(next_due if next_due is not None else self.interval)
                if self._write(batch):
                    backoff = 0.0
                else:
                    backoff = min(max(backoff * 2, 0.5), 10.0)
                    time.sleep(backoff)
        finally:
            connection.close()


BUFFER = RecordBuffer()
os.register_at_fork(after_in_child=BUFFER._reset)


@atexit.register
def _flush_at_exit() -> None:
    try:
        if BUFFER.background:
            BUFFER.stop_background(timeout=10)
        else:
            BUFFER.flush()
    except Exception:  # noqa: BLE001 - at exit, a log line is all that can be done
        logger.warning("could not flush task records at exit", exc_info=True)


def flush_task_records() -> None:
    """Write this process's pending task records now (the scheduler, commands and tests call it)."""
    BUFFER.flush()


def flush_task_records_middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable:
    """Django middleware: a task queued by a request has its record before the response leaves, so a
    client can look it up by id at once."""

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if BUFFER.pending_count():
            BUFFER.flush()
        return response

    return middleware


def message_attempt(message: dramatiq.Message) -> int:
    options = message.options
    return options.get("retries", 0) + 1 + options.get(ATTEMPT_OFFSET_OPTION, 0)


def error_fields(exception: BaseException) -> dict[str, str]:
    try:
        message = str(exception)
    except Exception:  # noqa: BLE001 - a broken __str__ must not crash the worker
        message = f"<unprintable {type(exception).__name__}>"
    return {
        "error_type": type(exception).__name__,
        "error_message": message[:TEXT_MAX_CHARS],
        "traceback": "".join(tb.format_exception(exception))[-TEXT_MAX_CHARS:],
    }


def write_transition(message: dramatiq.Message, status: str, **fields: Any) -> None:
    """Record one transition of `message` and write it at once (tests and one-off callers)."""
    row = Row(message, status, message_attempt(message), **fields)
    if not write_rows([row]):
        logger.warning("could not record %s of message %s", status, message.message_id)


def record_transition(message: dramatiq.Message, status: str, *, attempt: int | None = None, **fields: Any) -> None:
    """Queue one transition of `message` in this process's buffer."""
    BUFFER.add(Row(message, status, attempt if attempt is not None else message_attempt(message), **fields))


class TaskRecordMiddleware(Middleware):
    @property
    def actor_options(self) -> set[str]:
        return {"origin"}

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only `dramatiq` worker processes emit this: they get the writer thread. An in-process
        # dramatiq.Worker (tests) writes from its own threads instead.
        self._worker_process = True

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if getattr(self, "_worker_process", False):
            BUFFER.start_background()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        BUFFER.stop_background()

    def after_enqueue(self, broker: dramatiq.Broker, message: dramatiq.Message, delay: int | None) -> None:
        if message.options.get("retries", 0) > 0:
            status = Status.RETRYING
        elif delay:
            status = Status.DELAYED
        else:
            status = Status.ENQUEUED
        BUFFER.add(Row(message, status, message_attempt(message)))

    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        # Remembered on the message proxy: Retries bumps "retries" before the message is rejected.
        message._newsrec_attempt = attempt = message_attempt(message)
        BUFFER.add(Row(message, Status.RUNNING, attempt, started_at=_now(), worker=worker_name()))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        attempt = getattr(message, "_newsrec_attempt", None) or message_attempt(message)
        if exception is None:
            BUFFER.add(Row(message, Status.SUCCEEDED, attempt, finished_at=_now(), result=cap_result(result)))
            return
        # Written as failed; a retry's enqueue (next attempt) moves the row on to "retrying", and a
        # rejection to the dead-letter queue to "dead-lettered".
        BUFFER.add(Row(message, Status.FAILED, attempt, finished_at=_now(), **error_fields(exception)))

    def after_skip_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        attempt = getattr(message, "_newsrec_attempt", None) or message_attempt(message)
        BUFFER.add(Row(message, Status.SKIPPED, attempt, finished_at=_now(), error_message="skipped (age limit)"))

    def before_ack(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        # Redis forgets the message once acknowledged: its final record must be in Postgres first.
        BUFFER.wait_for(message.message_id)

    def before_nack(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        BUFFER.wait_for(message.message_id)

    def after_nack(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        exception = getattr(message, "_exception", None)
        if isinstance(exception, SkipMessage):
            return  # recorded as skipped (it waits in the dead-letter queue all the same)
        attempt = getattr(message, "_newsrec_attempt", None) or message_attempt(message)
        fields = error_fields(exception) if exception is not None else {}
        BUFFER.add(Row(message, Status.DEAD_LETTERED, attempt, finished_at=_now(), **fields))
