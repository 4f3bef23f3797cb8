"""Bulk actions over everything the task list's filters show, not only the rows ticked on one page.

"Requeue every dead-lettered process_articles" or "delete every succeeded record enqueued before a date":
the list's links carry its filters here; a confirmation page says how many records the action will touch,
and only its POST acts. The records are selected by the admin's own ChangeList, so the filters mean
exactly what they mean on the list.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, time
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import path, reverse
from django.utils import timezone

from pipeline.admin.pages import TaskRecordPages
from pipeline.taskqueue.dead_letters import requeue_dead_letters
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.models import TaskRecord

# Rows deleted per statement: short locks, as in the retention purge.
DELETE_BATCH = 5000
OPERATIONS = {
    "requeue": "Put back on their queues every dead-lettered task these filters show",
    "delete": "Delete every task record these filters show",
}
OWN_PARAMETERS = {"before"}  # this page's own, not the list's filters


def parse_day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw) if raw else None
    except ValueError:
        return None


def delete_in_batches(queryset: QuerySet[TaskRecord]) -> int:
    deleted = 0
    while ids := list(queryset.order_by().values_list("pk", flat=True)[:DELETE_BATCH]):
        deleted += TaskRecord.objects.filter(pk__in=ids).delete()[0]
    return deleted


class BulkActionPages(TaskRecordPages):
    def get_urls(self) -> list:
        page = self.admin_site.admin_view
        return [
            path("bulk/<str:operation>/", page(self.bulk_view), name="pipeline_taskrecord_bulk"),
            *super().get_urls(),
        ]

    def _matching(self, request: HttpRequest, filters: QueryDict) -> QuerySet[TaskRecord]:
        """The records the task list shows with these filters, across all its pages."""
        as_listed = copy.copy(request)
        as_listed.GET = filters  # type: ignore[assignment]
        changelist = self.get_changelist_instance(as_listed)
        return changelist.get_queryset(as_listed)

    def bulk_view(self, request: HttpRequest, operation: str) -> HttpResponse:
        if operation not in OPERATIONS:
            raise Http404("unknown bulk action")
        allowed = (
            self.has_requeue_permission(request) if operation == "requeue" else self.has_delete_permission(request)
        )
        if not allowed:
            raise PermissionDenied
        params = request.POST if request.method == "POST" else request.GET
        filters = QueryDict(mutable=True)
        for key in params:
            if key not in OWN_PARAMETERS and key != "csrfmiddlewaretoken":
                filters.setlist(key, params.getlist(key))
        before = parse_day(params.get("before", ""))
        queryset = self._matching(request, filters)
        if operation == "requeue":
            queryset = queryset.filter(status=TaskRecord.Status.DEAD_LETTERED)
        elif before is not None:
            queryset = queryset.filter(enqueued_at__lt=timezone.make_aware(datetime.combine(before, time.min)))
        back = reverse("admin:pipeline_taskrecord_changelist") + (f"?{filters.urlencode()}" if filters else "")
        if request.method == "POST":
            self._act(request, operation, queryset)
            return HttpResponseRedirect(back)
        return self._page(
            request,
            "bulk_confirm.html",
            OPERATIONS[operation],
            operation=operation,
            count=queryset.count(),
            filters=[(key, value) for key in filters for value in filters.getlist(key)],
            before=before.isoformat() if before else "",
            back=back,
        )

    def _act(self, request: HttpRequest, operation: str, queryset: QuerySet[TaskRecord]) -> None:
        if operation == "delete":
            self.message_user(request, f"{delete_in_batches(queryset)} task record(s) deleted.", messages.SUCCESS)
            return
        ids = list(queryset.values_list("message_id", flat=True))
        try:
            with queue_errors_as_unavailable():
                requeued = requeue_dead_letters(message_ids=ids)
        except QueueUnavailable as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"{len(requeued)} message(s) put back on their queues.", messages.SUCCESS)
        if len(requeued) < len(ids):
            self.message_user(
                request, f"{len(ids) - len(requeued)} were no longer in a dead-letter queue.", messages.WARNING
            )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {
            "can_bulk_requeue": self.has_requeue_permission(request),
            "can_bulk_delete": self.has_delete_permission(request),
        }
        return super().changelist_view(request, {**extra, **(extra_context or {})})
