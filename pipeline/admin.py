from __future__ import annotations

from django.contrib import admin

from pipeline.models import TaskRecord


@admin.register(TaskRecord)
class TaskRecordAdmin(admin.ModelAdmin):
    list_display = ["message_id", "actor_name", "queue_name", "status", "attempt", "origin", "enqueued_at", "finished_at"]
    list_filter = ["status", "actor_name", "queue_name", "origin"]
    search_fields = ["message_id", "actor_name"]
    date_hierarchy = "enqueued_at"

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
