"""The operators' dashboard: queue depths, workers, failures of the last hour and the scheduler, on one page.

What Sidekiq's and Flower's front pages show at a glance; each block links to the page with the details.
Every block reads its own source and says so when that source is down, so the page still loads
without Redis (the records are in Postgres).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis
from django.db.models import Count
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path

from pipeline.admin.pages import TaskRecordPages
from pipeline.taskqueue import monitoring, schedules
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.heartbeats import live_workers
from pipeline.taskqueue.models import TaskRecord

FAILURE_WINDOW = timedelta(hours=1)
FAILED_STATUSES = [TaskRecord.Status.FAILED, TaskRecord.Status.DEAD_LETTERED]


def recent_failures(since: datetime) -> tuple[list[dict[str, Any]], list[TaskRecord]]:
    """Failed and dead-lettered tasks finished since `since`: counts per actor, and the latest ten."""
    failed = TaskRecord.objects.filter(status__in=FAILED_STATUSES, finished_at__gte=since)
    per_actor = [
        {"actor_name": row["actor_name"], "n": int(row["n"])}
        for row in failed.order_by().values("actor_name").annotate(n=Count("id")).order_by("-n", "actor_name")
    ]
    latest = list(
        failed.only("id", "message_id", "actor_name", "status", "error_type", "finished_at").order_by("-finished_at")[
            :10
        ]
    )
    return per_actor, latest


class DashboardPages(TaskRecordPages):
    def get_urls(self) -> list:
        page = self.admin_site.admin_view
        return [
            path("dashboard/", page(self.dashboard_view), name="pipeline_taskrecord_dashboard"),
            *super().get_urls(),
        ]

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        now = datetime.now(UTC)
        broker_error = ""
        depths: list[monitoring.QueueDepth] = []
        workers = []
        try:
            with queue_errors_as_unavailable():
                depths = monitoring.queue_depths()
                workers = live_workers(dramatiq.get_broker())
        except QueueUnavailable as error:
            broker_error = str(error)
        queues = [{"depth": depth, "workers": sum(depth.name in w.queues for w in workers)} for depth in depths]
        jobs: list[schedules.ScheduledJob] = []
        alive = None
        try:
            jobs = schedules.schedule_overview()
            alive = schedules.scheduler_alive()
        except redis.RedisError as error:
            broker_error = broker_error or f"Redis unavailable ({type(error).__name__})"
        per_actor, latest = recent_failures(now - FAILURE_WINDOW)
        return self._page(
            request,
            "dashboard.html",
            "Task dashboard",
            queues=queues,
            workers=workers,
            broker_error=broker_error,
            failures_per_actor=per_actor,
            failures_total=sum(row["n"] for row in per_actor),
            latest_failures=latest,
            jobs=jobs,
            scheduler_alive=alive,
            counts=monitoring.status_counts(TaskRecord.objects.filter(enqueued_at__gte=now - FAILURE_WINDOW)),
            now=now.timestamp(),
        )
