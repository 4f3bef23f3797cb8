"""The task admin's own pages: queues and workers, statistics, scheduled jobs, and retrying one task.

Mixed into TaskRecordAdmin (pipeline.admin.task_records), whose permissions they check.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dramatiq
import redis
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from pipeline.taskqueue import monitoring, schedules
from pipeline.taskqueue.buffer import flush_task_records
from pipeline.taskqueue.dead_letters import list_dead_letters, requeue_dead_letters
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.heartbeats import live_workers
from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.names import Origin
from pipeline.taskqueue.retrying import TaskNotRetryable, retry_task

REFRESH_SECONDS = 5


class TaskRecordPages(admin.ModelAdmin):
    # Operators only (permissions of migration 0003); checked by the pages below and the list's actions.
    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.retry_taskrecord")

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.requeue_dead_letters")

    def has_schedules_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.manage_schedules")

    def get_urls(self) -> list:
        page = self.admin_site.admin_view
        return [
            path("queues/", page(self.queues_view), name="pipeline_taskrecord_queues"),
            path("queues/<str:queue_name>/requeue/", page(self.requeue_queue_view), name="pipeline_taskrecord_requeue"),
            path("stats/", page(self.stats_view), name="pipeline_taskrecord_stats"),
            path("schedules/", page(self.schedules_view), name="pipeline_taskrecord_schedules"),
            path(
                "schedules/<str:job_id>/<str:action>/",
                page(self.schedule_action_view),
                name="pipeline_taskrecord_schedule_action",
            ),
            path("<path:object_id>/retry/", page(self.retry_view), name="pipeline_taskrecord_retry"),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, template: str, title: str, **context: Any) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request,
            f"admin/pipeline/taskrecord/{template}",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": title,
                "refresh_seconds": REFRESH_SECONDS,
                **context,
            },
        )

    def queues_view(self, request: HttpRequest) -> TemplateResponse:
        broker_error = ""
        depths, workers, letters = [], [], []
        try:
            with queue_errors_as_unavailable():
                depths = monitoring.queue_depths()
                workers = live_workers(dramatiq.get_broker())
                letters = list_dead_letters(limit=20)
        except QueueUnavailable as error:
            broker_error = str(error)
        return self._page(
            request,
            "queues.html",
            "Queues and workers",
            depths=depths,
            workers=workers,
            stuck=monitoring.stuck_tasks(workers) if not broker_error else [],
            dead_letters=letters,
            broker_error=broker_error,
            can_requeue=self.has_requeue_permission(request),
            now=datetime.now(UTC).timestamp(),
        )

    def requeue_queue_view(self, request: HttpRequest, queue_name: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseRedirect(reverse("admin:pipeline_taskrecord_queues"))
        if not self.has_requeue_permission(request):
            raise PermissionDenied
        try:
            with queue_errors_as_unavailable():
                requeued = requeue_dead_letters(queue_name)
            self.message_user(request, f"{len(requeued)} message(s) of {queue_name} put back on the queue.")
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
        return HttpResponseRedirect(reverse("admin:pipeline_taskrecord_queues"))

    def stats_view(self, request: HttpRequest) -> TemplateResponse:
        window_name = request.GET.get("window", "hour")
        if window_name not in monitoring.WINDOWS:
            window_name = "hour"
        window = monitoring.WINDOWS[window_name]
        stats = monitoring.actor_stats(window)
        most = max((s.finished for s in stats), default=0) or 1
        slowest = max((s.p95 or 0 for s in stats), default=0) or 1
        rows = [
            {
                "stats": s,
                "ok_pct": 100 * s.succeeded / most,
                "failed_pct": 100 * s.failed / most,
                "p50_pct": 100 * (s.p50 or 0) / slowest,
                "p95_pct": 100 * (s.p95 or 0) / slowest,
            }
            for s in stats
        ]
        buckets = monitoring.throughput(window)
        peak = max((ok + bad for _, ok, bad in buckets), default=0) or 1
        width = 100 / max(len(buckets), 1)
        bars = []
        for i, (at, ok, bad) in enumerate(buckets):
            ok_h, bad_h = 100 * ok / peak, 100 * bad / peak
            bars.append(
                {
                    "at": at,
                    "ok": ok,
                    "bad": bad,
                    "x": f"{i * width:.3f}",
                    "w": f"{width * 0.85:.3f}",
                    "ok_y": f"{100 - ok_h:.3f}",
                    "ok_h": f"{ok_h:.3f}",
                    "bad_y": f"{100 - ok_h - bad_h:.3f}",
                    "bad_h": f"{bad_h:.3f}",
                }
            )
        return self._page(
            request,
            "stats.html",
            "Task statistics",
            rows=rows,
            window_name=window_name,
            windows=list(monitoring.WINDOWS),
            bars=bars,
            peak=peak,
        )

    def schedules_view(self, request: HttpRequest) -> TemplateResponse:
        error = ""
        jobs: list[schedules.ScheduledJob] = []
        alive = None
        try:
            jobs = schedules.schedule_overview()
            alive = schedules.scheduler_alive()
        except redis.RedisError as exc:
            error = f"Redis unavailable ({type(exc).__name__})"
        return self._page(
            request,
            "schedules.html",
            "Scheduled jobs",
            jobs=jobs,
            scheduler_alive=alive,
            redis_error=error,
            can_manage=self.has_schedules_permission(request),
        )

    def schedule_action_view(self, request: HttpRequest, job_id: str, action: str) -> HttpResponse:
        back = HttpResponseRedirect(reverse("admin:pipeline_taskrecord_schedules"))
        if request.method != "POST":
            return back
        if not self.has_schedules_permission(request):
            raise PermissionDenied
        operations = {
            "run": lambda: f"{job_id}: queued as task {schedules.run_job_now(job_id, origin='admin')}",
            "pause": lambda: _done(schedules.pause_job, job_id, "paused"),
            "resume": lambda: _done(schedules.resume_job, job_id, "resumed"),
        }
        if action not in operations:
            raise Http404("unknown action")
        try:
            with queue_errors_as_unavailable():
                self.message_user(request, operations[action]())
        except schedules.UnknownJob:
            raise Http404("unknown job") from None
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
        return back

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        record = self.get_object(request, object_id)
        if record is None:
            raise Http404("no such task")
        back = HttpResponseRedirect(reverse("admin:pipeline_taskrecord_change", args=[record.pk]))
        if request.method != "POST":
            return back
        if not self.has_retry_permission(request):
            raise PermissionDenied
        try:
            with queue_errors_as_unavailable():
                new_id = retry_task(record, origin=Origin.ADMIN)
        except TaskNotRetryable as error:
            self.message_user(request, str(error), messages.WARNING)
            return back
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return back
        self.message_user(request, f"Sent again as task {new_id}.", messages.SUCCESS)
        flush_task_records()
        new = TaskRecord.objects.filter(message_id=new_id).first()
        return HttpResponseRedirect(reverse("admin:pipeline_taskrecord_change", args=[new.pk])) if new else back


def _done(operation: Callable[[str], None], job_id: str, what: str) -> str:
    operation(job_id)
    return f"{job_id}: {what}"
