from __future__ import annotations

from rest_framework import mixins, viewsets

from pipeline.models import TaskRecord
from pipeline.serializers import TaskRecordSerializer


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Task status by id: queued, running, succeeded or failed, with the result once done."""

    queryset = TaskRecord.objects.all()
    serializer_class = TaskRecordSerializer
    lookup_field = "message_id"
    lookup_url_kwarg = "task_id"
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    filterset_fields = ["status", "actor_name", "queue_name", "origin"]
