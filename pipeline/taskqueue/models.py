"""Durable records of every Dramatiq message: what ran, where, how long, and what came of it."""

from __future__ import annotations

import re
from datetime import timedelta

from django.db import models
from django.db.models.functions import Cast, Concat, Upper

from pipeline.taskqueue import names


def arguments_text() -> Upper:
    """UPPER(args::text || ' ' || kwargs::text): what search by argument value matches, and what the
    trigram index holds (the same expression, so Postgres uses the index for LIKE '%term%')."""
    return Upper(
        Concat(
            Cast("args", models.TextField()),
            models.Value(" "),
            Cast("kwargs", models.TextField()),
            output_field=models.TextField(),
        )
    )


UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class TaskRecordQuerySet(models.QuerySet):
    def search(self, term: str) -> TaskRecordQuerySet:
        """A task id finds that task and its retries; anything else is matched inside the arguments."""
        term = term.strip()
        if not term:
            return self
        if UUID_RE.match(term):
            return self.filter(models.Q(message_id=term.lower()) | models.Q(retry_of=term.lower()))
        return self.annotate(arguments_text=arguments_text()).filter(arguments_text__contains=term.upper())

    def with_duration(self) -> TaskRecordQuerySet:
        return self.annotate(duration_value=models.F("finished_at") - models.F("started_at"))


class TaskRecord(models.Model):
    class Status(models.TextChoices):
        # The values live in pipeline.taskqueue.names, which the middleware can import early.
        DELAYED = names.Status.DELAYED
        ENQUEUED = names.Status.ENQUEUED
        RETRYING = names.Status.RETRYING
        RUNNING = names.Status.RUNNING
        SUCCEEDED = names.Status.SUCCEEDED
        FAILED = names.Status.FAILED
        SKIPPED = names.Status.SKIPPED, "Skipped (age limit)"
        DEAD_LETTERED = names.Status.DEAD_LETTERED, "Dead-lettered"

    message_id = models.CharField(max_length=36, unique=True)
    actor_name = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices)
    # (attempt, status_rank) only ever grows, whatever order the producer's and workers' writes land in;
    # see pipeline.taskqueue.rows and .upsert for the ranks and the merge rules of every column.
    attempt = models.PositiveIntegerField(default=1)
    status_rank = models.PositiveSmallIntegerField(default=0)
    # attempt * 8 + rank of the transition the outcome columns (finished_at, result, error_*) come from:
    # a late write of an older outcome never overwrites a newer one.
    outcome_key = models.PositiveIntegerField(default=0)
    origin = models.CharField(max_length=32, blank=True, help_text=", ".join(names.Origin.ALL))
    retry_of = models.CharField(
        max_length=36, blank=True, help_text="the task this one re-sends with the same arguments (admin/API retry)"
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    objects = TaskRecordQuerySet.as_manager()

    class Meta:
        ordering = ["-enqueued_at", "-id"]
        indexes = [
            # admin and API task lists: ORDER BY enqueued_at DESC, filtered by status
            models.Index(fields=["status", "-enqueued_at"], name="taskrecord_status_idx"),
            # task lists, the stats page (enqueued in the last hour/day) and the retention purge
            models.Index(fields=["-enqueued_at"], name="taskrecord_enqueued_idx"),
            # "retries of this task" on the detail page; partial: almost no row is a retry
            models.Index(fields=["retry_of"], name="taskrecord_retry_of_idx", condition=~models.Q(retry_of="")),
            # Search by argument value, arguments_text() LIKE '%TERM%' (TaskRecordQuerySet.search), uses the
            # trigram index taskrecord_arguments_trgm, created by SQL in migration 0002: Django 5.2 puts
            # an OpClass of an expression inside parentheses, which Postgres rejects.
        ]
        permissions = [
            ("retry_taskrecord", "Can retry tasks (re-send with the same arguments)"),
            ("requeue_dead_letters", "Can requeue dead-lettered messages"),
            ("manage_schedules", "Can run, pause and resume scheduled jobs"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.message_id}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at and self.finished_at >= self.started_at:
            return self.finished_at - self.started_at
        return None

    @property
    def public_status(self) -> str:
        """The four states the API promises: queued, running, succeeded, failed."""
        if self.status in {self.Status.DELAYED, self.Status.ENQUEUED, self.Status.RETRYING}:
            return "queued"
        if self.status == self.Status.RUNNING:
            return "running"
        if self.status == self.Status.SUCCEEDED:
            return "succeeded"
        return "failed"

    @property
    def is_finished(self) -> bool:
        return self.status_rank >= names.FINISHED_RANK
