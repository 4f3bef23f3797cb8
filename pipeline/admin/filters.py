"""The task list's filters: actor and queue from the broker's declarations, origin, and time window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dramatiq
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.names import Origin


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
        return [(o, o) for o in Origin.ALL]

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
