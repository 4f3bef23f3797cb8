"""The task API: records by id or filtered like the admin, and retrying a finished task."""

from __future__ import annotations

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from pipeline.taskqueue.buffer import flush_task_records
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.models import TaskRecord, TaskRecordQuerySet
from pipeline.taskqueue.names import Origin
from pipeline.taskqueue.retrying import TaskNotRetryable, retry_task
from pipeline.taskqueue.serializers import TaskProblemSerializer, TaskRecordSerializer, TaskRetrySerializer

# The four states the API promises, each a set of detailed states (`state` in a record).
PUBLIC_STATUSES = {
    "queued": [TaskRecord.Status.DELAYED, TaskRecord.Status.ENQUEUED, TaskRecord.Status.RETRYING],
    "running": [TaskRecord.Status.RUNNING],
    "succeeded": [TaskRecord.Status.SUCCEEDED],
    "failed": [TaskRecord.Status.FAILED, TaskRecord.Status.SKIPPED, TaskRecord.Status.DEAD_LETTERED],
}


class TaskRecordFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(s, s) for s in PUBLIC_STATUSES],
        method="filter_status",
        help_text="queued, running, succeeded, failed",
    )
    state = django_filters.ChoiceFilter(field_name="status", choices=TaskRecord.Status.choices)
    actor_name = django_filters.CharFilter()
    queue_name = django_filters.CharFilter()
    origin = django_filters.CharFilter()
    retry_of = django_filters.UUIDFilter(method="filter_retry_of")
    since = django_filters.IsoDateTimeFilter(field_name="enqueued_at", lookup_expr="gte")
    until = django_filters.IsoDateTimeFilter(field_name="enqueued_at", lookup_expr="lt")
    search = django_filters.CharFilter(method="filter_search", help_text="a task id, or text inside the arguments")

    class Meta:
        model = TaskRecord
        fields: list[str] = []

    def filter_status(self, queryset: QuerySet[TaskRecord], name: str, value: str) -> QuerySet[TaskRecord]:
        return queryset.filter(status__in=PUBLIC_STATUSES[value])

    def filter_retry_of(self, queryset: QuerySet[TaskRecord], name: str, value: object) -> QuerySet[TaskRecord]:
        return queryset.filter(retry_of=str(value))

    def filter_search(self, queryset: TaskRecordQuerySet, name: str, value: str) -> TaskRecordQuerySet:
        return queryset.search(value[:200])


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Task status by id: queued, running, succeeded or failed, with the result once done."""

    queryset = TaskRecord.objects.all()
    serializer_class = TaskRecordSerializer
    lookup_field = "message_id"
    lookup_url_kwarg = "task_id"
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filterset_class = TaskRecordFilter
    # The permission the task admin checks too (pipeline/admin/pages.py); the API's default permission
    # class (settings REST_FRAMEWORK) reads this table.
    write_permissions = {"retry": ["pipeline.retry_taskrecord"]}

    def get_object(self) -> TaskRecord:
        self.kwargs[self.lookup_url_kwarg] = self.kwargs[self.lookup_url_kwarg].lower()
        return super().get_object()

    @extend_schema(
        request=None,
        responses={
            202: TaskRetrySerializer,
            404: TaskProblemSerializer,
            409: TaskProblemSerializer,
            503: TaskProblemSerializer,
        },
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, task_id: str | None = None) -> Response:
        """Send a finished task again with the same arguments: 202 with the new task id (whose record's
        `retry_of` is this one); 409 while the task is queued or running."""
        record = self.get_object()
        try:
            with queue_errors_as_unavailable():
                new_id = retry_task(record, origin=Origin.API)
        except TaskNotRetryable as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        except QueueUnavailable as error:
            return Response(
                {"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "30"}
            )
        flush_task_records()
        return Response(
            {
                "task_id": new_id,
                "status": "queued",
                "retry_of": record.message_id,
                "status_url": request.build_absolute_uri(f"/api/tasks/{new_id}/"),
            },
            status=status.HTTP_202_ACCEPTED,
        )
