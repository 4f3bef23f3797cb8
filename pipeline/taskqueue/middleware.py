"""Dramatiq middleware that keeps one TaskRecord row per message id (see pipeline.taskqueue.buffer for
when rows are written, and pipeline.taskqueue.rows for how they merge)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from pipeline.taskqueue.buffer import BUFFER
from pipeline.taskqueue.names import Status
from pipeline.taskqueue.rows import Row, cap_result, error_fields, message_attempt, worker_name
from pipeline.taskqueue.upsert import write_rows

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


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

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        # Remembered on the message proxy: Retries bumps "retries" before the message is rejected.
        attempt = message_attempt(message)
        message._newsrec_attempt = attempt  # type: ignore[attr-defined]  # the proxy lives for this delivery
        BUFFER.add(Row(message, Status.RUNNING, attempt, started_at=_now(), worker=worker_name()))

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
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

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        attempt = getattr(message, "_newsrec_attempt", None) or message_attempt(message)
        BUFFER.add(Row(message, Status.SKIPPED, attempt, finished_at=_now(), error_message="skipped (age limit)"))

    # No before_ack: the broker's consumer sends an ack only once the message's final record is in
    # Postgres (pipeline.taskqueue.redis_connection, BUFFER.call_after_write), without holding up the
    # worker thread. A rejection is rare and waits here.

    def before_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        BUFFER.wait_for(message.message_id)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        exception = getattr(message, "_exception", None)
        if isinstance(exception, SkipMessage):
            return  # recorded as skipped (it waits in the dead-letter queue all the same)
        attempt = getattr(message, "_newsrec_attempt", None) or message_attempt(message)
        if exception is not None:
            BUFFER.add(Row(message, Status.DEAD_LETTERED, attempt, finished_at=_now(), **error_fields(exception)))
        else:
            BUFFER.add(Row(message, Status.DEAD_LETTERED, attempt, finished_at=_now()))
