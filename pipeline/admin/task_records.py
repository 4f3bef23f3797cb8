"""The task admin: every task and its result, and the actions on them (its extra pages: pages.py).

Everything a task carries (arguments, results, errors, tracebacks) comes from outside and is shown
as text: Django's templates escape it, and the few HTML fragments built here use format_html, which
escapes every value it is given.

Permissions (groups made by migration 0003): "newsrec viewers" can look (view_taskrecord);
"newsrec operators" can also retry, requeue dead letters, run/pause/resume scheduled jobs and delete.
"""

from __future__ import annotations

import dramatiq
import redis
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from pipeline.admin.bulk import BulkActionPages
from pipeline.admin.dashboard import DashboardPages
from pipeline.admin.display import pretty_json, status_badge
from pipeline.admin.filters import ActorFilter, EnqueuedWithinFilter, OriginFilter, QueueFilter
from pipeline.admin.pages import REFRESH_SECONDS
from pipeline.taskqueue import monitoring
from pipeline.taskqueue.dead_letters import requeue_dead_letters
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.models import TaskRecord, TaskRecordQuerySet
from pipeline.taskqueue.names import Origin
from pipeline.taskqueue.retrying import TaskNotRetryable, retry_task


@admin.register(TaskRecord)
class TaskRecordAdmin(BulkActionPages, DashboardPages):
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

    def get_queryset(self, request: HttpRequest) -> TaskRecordQuerySet:
        return TaskRecord.objects.all().with_duration()

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskRecord], search_term: str
    ) -> tuple[QuerySet[TaskRecord], bool]:
        assert isinstance(queryset, TaskRecordQuerySet)  # get_queryset's, filtered
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

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        context = response.context_data if isinstance(response, TemplateResponse) else None
        if context is not None and "cl" in context:
            counts = monitoring.status_counts(context["cl"].queryset)
            context["status_counts"] = [(status, status_badge(status), count) for status, count in counts.items()]
            context["refresh_seconds"] = REFRESH_SECONDS
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
                sent.append(retry_task(record, origin=Origin.ADMIN))
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
