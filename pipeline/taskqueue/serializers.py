from __future__ import annotations

from rest_framework import serializers

from pipeline.taskqueue.models import TaskRecord


class TaskRecordSerializer(serializers.ModelSerializer):
    task_id = serializers.CharField(source="message_id", read_only=True)
    status = serializers.CharField(
        source="public_status", read_only=True, help_text="queued, running, succeeded, failed"
    )
    state = serializers.CharField(source="status", read_only=True, help_text="detailed state, e.g. retrying or skipped")
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = TaskRecord
        fields = [
            "task_id",
            "status",
            "state",
            "actor_name",
            "queue_name",
            "args",
            "kwargs",
            "attempt",
            "origin",
            "enqueued_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "worker",
            "result",
            "error_type",
            "error_message",
            "retry_of",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, record: TaskRecord) -> float | None:
        return record.duration.total_seconds() if record.duration is not None else None


class TaskRetrySerializer(serializers.Serializer):
    """The answer to POST /api/tasks/{id}/retry/ (the request has no body)."""

    task_id = serializers.CharField(read_only=True, help_text="the new task")
    status = serializers.CharField(read_only=True)
    retry_of = serializers.CharField(read_only=True)
    status_url = serializers.URLField(read_only=True)


class TaskProblemSerializer(serializers.Serializer):
    detail = serializers.CharField(read_only=True)
