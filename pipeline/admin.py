"""The task admin: every task and its result, actions on them, and the queues, stats and schedules pages.

Everything a task carries (arguments, results, errors, tracebacks) comes from outside and is shown
as text: Django's templates escape it, and the few HTML fragments built here use format_html, which
escapes every value it is given.

Permissions (groups made by migration 0003): "newsrec viewers" can look (view_taskrecord);
"newsrec operators" can also retry, requeue dead letters, run/pause/resume scheduled jobs and delete.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import redis
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from newsrec import scheduler
from pipeline import monitoring
from pipeline.dead_letters import list_dead_letters, requeue_dead_letters
from pipeline.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.heartbeats import live_workers
from pipeline.models import TaskRecord
from pipeline.records import flush_task_records
from pipeline.retrying import TaskNotRetryable, retry_task

ORIGINS = ["api", "scheduler", "pipeline", "admin", "command"]
STATUS_COLOURS = {
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "dead-lettered": "#6a1b9a",
    "skipped": "#795548",
    "running": "#1565c0",
    "retrying": "#ef6c00",
}
REFRESH_SECONDS = 5

# django-dramatiq's own task admin lists what its AdminMiddleware writes; newsrec does not use that
# middleware (see pipeline.records), so its page would only ever be empty next to this one.
try:
    from django_dramatiq.models import Task as DjangoDramatiqTask

    admin.site.unregister(DjangoDramatiqTask)
except NotRegistered:
    pass


def status_badge(status: str) -> str:
    return format_html(
        '<span style="color:#fff;background:{};padding:1px 6px;border-radius:8px;white-space:nowrap">{}</span>',
        STATUS_COLOURS.get(status, "#607d8b"),
        status,
    )


def pretty_json(value: Any) -> str:
    return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', json.dumps(value, indent=2))


class ActorFilter(admin.SimpleListFilter):
    """Choices from the actors declared on the broker (no DISTINCT over the whole table)."""

    title = "actor"
    parameter_name = "actor_name"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(dramatiq.get_broker().get_declared_actors())]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> QuerySet[TaskRecord]:
        return queryset.filter(actor_name=self.value()) if self.value() else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue_name"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(q, q) for q in sorted(dramatiq.get_broker().get_declared_queues()) if not q.endswith(".DQ")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> QuerySet[TaskRecord]:
        return queryset.filter(queue_name=self.value()) if self.value() else queryset


class OriginFilter(admin.SimpleListFilter):
    title = "origin"
    parameter_name = "origin"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(o, o) for o in ORIGINS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> QuerySet[TaskRecord]:
        return queryset.filter(origin=self.value()) if self.value() else queryset


class EnqueuedWithinFilter(admin.SimpleListFilter):
    title = "enqueued"
    parameter_name = "within"
    WINDOWS = {
        "15m": timedelta(minutes=15),
        "1h": timedelta(hours=1),
        "24h": timedelta(days=1),
        "7d": timedelta(days=7),
    }

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("15m", "last 15 minutes"), ("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> QuerySet[TaskRecord]:
        window = self.WINDOWS.get(self.value() or "")
        return queryset.filter(enqueued_at__gte=datetime.now(UTC) - window) if window else queryset


@admin.register(TaskRecord)
class TaskRecordAdmin(admin.ModelAdmin):
    list_display = [
        "message_id",
        "actor_name",
        "queue_name",
        "status_display",
        "attempt",
        "origin",
        "enqueued_at",
        "duration_display",
        "worker",
    ]
    list_filter = ["status", ActorFilter, QueueFilter, OriginFilter, EnqueuedWithinFilter]
    search_fields = ["message_id"]  # the search box; the real matching is get_search_results
    search_help_text = "A task id (finds it and its retries), or text inside the arguments, e.g. a feed id or URL."
    date_hierarchy = "enqueued_at"
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) of the whole table on every refresh
    actions = ["retry_tasks", "requeue_dead_lettered", "delete_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "message_id",
                    "status_display",
                    "attempt",
                    "actor_name",
                    "queue_name",
                    "origin",
                    "retry_links",
                ]
            },
        ),
        ("Arguments", {"fields": ["args_display", "kwargs_display"]}),
        ("Timing", {"fields": ["enqueued_at", "started_at", "finished_at", "duration_display", "worker"]}),
        (
            "Outcome",
            {
                "fields": ["result_display", "error_type", "error_message", "traceback_display"],
                "description": "Of the last finished attempt: while a task waits for a retry, its finish time, "
                "error and traceback are those of the attempt that failed.",
            },
        ),
    ]

    # --- list and detail ---

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskRecord]:
        return super().get_queryset(request).with_duration()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRecord], search_term: str
    ) -> tuple[QuerySet[TaskRecord], bool]:
        return queryset.search(search_term), False

    @admin.display(description="status", ordering="status")
    def status_display(self, record: TaskRecord) -> str:
        return status_badge(record.status)

    @admin.display(description="duration", ordering="duration_value")
    def duration_display(self, record: TaskRecord) -> str:
        duration = record.duration
        if duration is None:
            return "–"
        seconds = duration.total_seconds()
        return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"

    @admin.display(description="arguments")
    def args_display(self, record: TaskRecord) -> str:
        return pretty_json(record.args)

    @admin.display(description="keyword arguments")
    def kwargs_display(self, record: TaskRecord) -> str:
        return pretty_json(record.kwargs)

    @admin.display(description="result")
    def result_display(self, record: TaskRecord) -> str:
        return pretty_json(record.result) if record.result is not None else "–"

    @admin.display(description="traceback")
    def traceback_display(self, record: TaskRecord) -> str:
        if not record.traceback:
            return "–"
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', record.traceback)

    @admin.display(description="retries")
    def retry_links(self, record: TaskRecord) -> str:
        parts = []
        if record.retry_of:
            parts.append(format_html("retry of {}", self._task_link(record.retry_of)))
        retries = list(TaskRecord.objects.filter(retry_of=record.message_id).values_list("message_id", "status")[:20])
        if retries:
            parts.append(
                format_html(
                    "retried as {}",
                    format_html_join(", ", "{} ({})", ((self._task_link(i), s) for i, s in retries)),
                )
            )
        return format_html_join(mark_safe("<br>"), "{}", ((p,) for p in parts)) if parts else "–"  # a constant

    def _task_link(self, message_id: str) -> str:
        record = TaskRecord.objects.filter(message_id=message_id).only("pk").first()
        if record is None:
            return format_html("{} (record purged)", message_id)
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:pipeline_taskrecord_change", args=[record.pk]), message_id
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TaskRecord | None = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.retry_taskrecord")

    def has_requeue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.requeue_dead_letters")

    def has_schedules_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("pipeline.manage_schedules")

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if isinstance(response, TemplateResponse) and "cl" in response.context_data:
            counts = monitoring.status_counts(response.context_data["cl"].queryset)
            response.context_data["status_counts"] = [
                (status, status_badge(status), count) for status, count in counts.items()
            ]
            response.context_data["refresh_seconds"] = REFRESH_SECONDS
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        record = self.get_object(request, object_id)
        extra = {**(extra_context or {}), "refresh_seconds": REFRESH_SECONDS}
        if record is not None:
            extra["task_finished"] = record.is_finished
            extra["can_retry"] = record.is_finished and self.has_retry_permission(request)
            extra["can_requeue"] = record.status == TaskRecord.Status.DEAD_LETTERED and self.has_requeue_permission(
                request
            )
        return super().change_view(request, object_id, form_url, extra)

    # --- actions ---

    @admin.action(description="Retry (send again with the same arguments)", permissions=["retry"])
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        sent, refused = [], []
        for record in queryset:
            try:
                sent.append(retry_task(record, origin="admin"))
            except TaskNotRetryable as error:
                refused.append(str(error))
            except (redis.RedisError, dramatiq.errors.BrokerConnectionError) as error:
                self.message_user(request, f"task queue unavailable: {type(error).__name__}", messages.ERROR)
                return
        if sent:
            self.message_user(request, f"{len(sent)} task(s) sent again: {', '.join(sent[:10])}", messages.SUCCESS)
        for reason in refused[:10]:
            self.message_user(request, reason, messages.WARNING)

    @admin.action(description="Requeue dead-lettered messages", permissions=["requeue"])
    def requeue_dead_lettered(self, request: HttpRequest, queryset: QuerySet[TaskRecord]) -> None:
        ids = list(queryset.values_list("message_id", flat=True))
        try:
            with queue_errors_as_unavailable():
                requeued = requeue_dead_letters(message_ids=ids)
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        missing = len(ids) - len(requeued)
        self.message_user(request, f"{len(requeued)} message(s) put back on their queues.", messages.SUCCESS)
        if missing:
            self.message_user(
                request,
                f"{missing} selected task(s) are not in a dead-letter queue (or expired there).",
                messages.WARNING,
            )

    # --- pages ---

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
        jobs: list[scheduler.ScheduledJob] = []
        alive = None
        try:
            jobs = scheduler.schedule_overview()
            alive = scheduler.scheduler_alive()
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
            "run": lambda: f"{job_id}: queued as task {scheduler.run_job_now(job_id, origin='admin')}",
            "pause": lambda: (scheduler.pause_job(job_id), f"{job_id}: paused")[1],
            "resume": lambda: (scheduler.resume_job(job_id), f"{job_id}: resumed")[1],
        }
        if action not in operations:
            raise Http404("unknown action")
        try:
            with queue_errors_as_unavailable():
                self.message_user(request, operations[action]())
        except scheduler.UnknownJob:
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
                new_id = retry_task(record, origin="admin")
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
