"""This process's pending task-record rows, and who writes them when.

- In `dramatiq`/`rundramatiq` worker processes a background thread writes them (group commit). Final
  transitions are written at once, and a worker acknowledges a message to Redis only after its final
  transition is in Postgres: the broker's consumer hands the ack to `call_after_write`, which the
  writer thread runs once the write is done, so the worker thread goes on to its next message instead
  of waiting for the commit (a rejection still waits, in the middleware's `before_nack`). A worker that
  dies loses only updates of messages it had not acknowledged, which Redis hands to another worker:
  the re-run writes them again, so the record converges. "running" rows wait up to
  `TASK_RECORD_FLUSH_INTERVAL_MS` so that a short task's start and finish merge into one write.
- Everywhere else (web, scheduler, management commands, tests) rows are written by the thread that
  added them: once `TASK_RECORD_BATCH_SIZE` rows are pending or the oldest is older than the flush
  interval, at the end of every HTTP request (`flush_task_records_middleware`), after every scheduler
  job, and at process exit. A producer that dies before a flush loses its "enqueued" rows; the message
  itself is in Redis, and the worker's rows create the record when it runs.

A failed write is logged and retried, and never fails or holds up the message itself.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse

from pipeline.taskqueue.names import FINISHED_RANK
from pipeline.taskqueue.rows import Row, merge_rows
from pipeline.taskqueue.upsert import write_rows

logger = logging.getLogger(__name__)

# What call_after_write runs with the items a write released: e.g. one consumer's acks, sent together.
BatchRun = Callable[[list[Any]], None]

WAIT_TIMEOUT_SECONDS = 10.0
# How often the writer thread retries an ack that Redis refused (a failover, a lost connection).
ACK_RETRY_SECONDS = 1.0


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
        # Work (acks) owed per message id once its pending rows are written: (run, item) pairs, run as
        # run([items…]) once per write so that many acks cost one Redis call; groups whose run raised
        # (Redis unreachable) wait for the writer's next passes.
        self._after_write: dict[str, list[tuple[BatchRun, Any]]] = {}
        self._failed_callbacks: list[tuple[BatchRun, list[Any]]] = []

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

    def call_after_write(self, message_id: str, item: Any, run: BatchRun) -> None:
        """Call run([item, …]) once this message's pending rows are in Postgres (or their write failed,
        as wait_for returns then): on the writer thread, with the other items of the same `run` that
        its write released, when it has the rows to write; else here and now."""
        with self._lock:
            if self._thread is not None and self._healthy and self._owes(message_id):
                self._after_write.setdefault(message_id, []).append((run, item))
                row = self._pending.get(message_id)
                if row is not None:
                    row.urgent = True
                    self._work.notify()
                return
        self.wait_for(message_id)
        run([item])

    def _owes(self, message_id: str) -> bool:
        return message_id in self._pending or message_id in self._writing

    def _take_callbacks(self, written: Iterable[str], *, failed: bool) -> list[tuple[BatchRun, list[Any]]]:
        """The work now due (under the lock), grouped by run: that of written messages with nothing left
        to write, or, after a failed write, of every message in it (a failed write holds up nothing)."""
        groups: dict[BatchRun, list[Any]] = {}
        for message_id in written:
            if message_id in self._after_write and (failed or not self._owes(message_id)):
                for run, item in self._after_write.pop(message_id):
                    groups.setdefault(run, []).append(item)
        return list(groups.items())

    def _run_callbacks(self, groups: list[tuple[BatchRun, list[Any]]]) -> None:
        for run, items in groups:
            try:
                run(items)
            except Exception:  # noqa: BLE001 - Redis away: retried on the writer's next passes
                logger.warning("could not acknowledge %d messages after their records; will retry", len(items))
                self._failed_callbacks.append((run, items))

    def _retry_failed_callbacks(self) -> None:
        failed, self._failed_callbacks = self._failed_callbacks, []
        self._run_callbacks(failed)

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
            callbacks = self._take_callbacks(self._ids(batch), failed=not ok)
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
        self._run_callbacks(callbacks)
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
        # Acks still owed (a write that outlived the join, acks whose Redis calls failed): one last try;
        # a message not acknowledged now is delivered again, and its record converges.
        with self._lock:
            callbacks = self._take_callbacks(list(self._after_write), failed=True)
        self._run_callbacks(callbacks)
        self._retry_failed_callbacks()
        if self._failed_callbacks:
            logger.warning("%d messages left unacknowledged at shutdown", len(self._failed_callbacks))
            self._failed_callbacks = []

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
                        if self._failed_callbacks:
                            break
                        self._work.wait(next_due if next_due is not None else self.interval)
                if self._failed_callbacks:
                    time.sleep(ACK_RETRY_SECONDS)
                    self._retry_failed_callbacks()
                if not batch:
                    continue
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
