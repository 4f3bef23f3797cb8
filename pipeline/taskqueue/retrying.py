"""Retrying a task: a new message with the same actor and arguments, linked to the original."""

from __future__ import annotations

import dramatiq
from dramatiq.errors import ActorNotFound

from pipeline.taskqueue.models import TaskRecord


class TaskNotRetryable(Exception):
    """The task cannot be retried now; the message says why."""


def retry_task(record: TaskRecord, *, origin: str) -> str:
    """Send the task again with the same arguments; returns the new task id (its record's retry_of
    is the original's id). Raises TaskNotRetryable for a task still queued or running."""
    if record.status == TaskRecord.Status.RUNNING:
        raise TaskNotRetryable(f"task {record.message_id} is running; retry it once it has finished")
    if not record.is_finished:
        raise TaskNotRetryable(f"task {record.message_id} is still queued ({record.status}); it will run")
    broker = dramatiq.get_broker()
    try:
        actor = broker.get_actor(record.actor_name)
    except ActorNotFound:
        raise TaskNotRetryable(f"actor {record.actor_name!r} no longer exists") from None
    args = record.args if isinstance(record.args, list) else []
    kwargs = record.kwargs if isinstance(record.kwargs, dict) else {}
    message = actor.message_with_options(args=tuple(args), kwargs=kwargs, origin=origin, retry_of=record.message_id)
    broker.enqueue(message)
    return message.message_id
