"""The names a task record is built from: statuses, their order, and who sent a message.

Plain constants, importable while Django's app registry is still loading (Dramatiq's middleware is
built then), so the model, the middleware and the admin all take them from here.
"""

from __future__ import annotations


class Status:
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
FINISHED = frozenset(s for s, rank in STATUS_RANK.items() if rank >= FINISHED_RANK)


class Origin:
    """Who asked for a message (the record's `origin`): set with `send_on_commit(..., origin=...)`."""

    API = "api"
    SCHEDULER = "scheduler"
    PIPELINE = "pipeline"  # sent by another task: a chain's follow-up, a sweep's batch
    ADMIN = "admin"
    COMMAND = "command"
    LABELS = "labels"  # a retraining queued by people's labels

    ALL = (API, SCHEDULER, PIPELINE, ADMIN, COMMAND, LABELS)


# Message option set when a dead-lettered message is requeued: the attempts it already had, so the
# requeued run counts on from them and its record moves forward (pipeline.taskqueue.dead_letters).
ATTEMPT_OFFSET_OPTION = "attempt_offset"
