"""Durable records of every Dramatiq message: what ran, where, how long, and what came of it."""

from __future__ import annotations

from datetime import timedelta

from django.db import models


class TaskRecord(models.Model):
    class Status(models.TextChoices):
        DELAYED = "delayed"
        ENQUEUED = "enqueued"
        RETRYING = "retrying"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    message_id = models.CharField(max_length=36, unique=True)
    actor_name = models.CharField(max_length=200)
    queue_name = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    kwargs = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices)
    # (attempt, status_rank) only ever grows, whatever order the producer's and workers' writes land in;
    # see pipeline.records for the ranks.
    attempt = models.PositiveIntegerField(default=1)
    status_rank = models.PositiveSmallIntegerField(default=0)
    origin = models.CharField(max_length=32, blank=True, help_text="api, scheduler, pipeline, admin, command")
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True)
    error_message = models.TextField(blank=True)
    traceback = models.TextField(blank=True)

    class Meta:
        ordering = ["-enqueued_at", "-id"]
        indexes = [
            # admin and API task lists: ORDER BY enqueued_at DESC, filtered by status
            models.Index(fields=["status", "-enqueued_at"], name="taskrecord_status_idx"),
            models.Index(fields=["-enqueued_at"], name="taskrecord_enqueued_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.actor_name} {self.message_id}"

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
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
