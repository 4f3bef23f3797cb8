"""Prometheus /metrics: per-actor task counts and durations from the records, queue depths from Redis.

Computed when scraped, from Postgres and Redis, so every web process answers the same thing and no
multi-process bookkeeping is needed. Counts cover the records kept (TASK_RECORD_RETENTION_DAYS), so
they are gauges, not counters: alert on rates with `delta()`/`deriv()`, or on the *_last_hour gauges.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dramatiq
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.taskqueue import monitoring
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.heartbeats import live_workers
from pipeline.taskqueue.models import TaskRecord

logger = logging.getLogger(__name__)

_COUNTS = f"SELECT actor_name, status, count(*) FROM {TaskRecord._meta.db_table} GROUP BY actor_name, status"


class TaskCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily(
            "newsrec_tasks", "Task records kept, by actor and detailed status", labels=["actor", "status"]
        )
        with connection.cursor() as cursor:
            cursor.execute(_COUNTS)
            for actor, status, count in cursor.fetchall():
                tasks.add_metric([actor, status], count)
        yield tasks

        hour = monitoring.actor_stats(timedelta(hours=1))
        finished = GaugeMetricFamily(
            "newsrec_tasks_last_hour",
            "Tasks enqueued in the last hour, by actor and outcome",
            labels=["actor", "outcome"],
        )
        duration = GaugeMetricFamily(
            "newsrec_task_duration_seconds",
            "Duration of tasks finished in the last hour (enqueued in it)",
            labels=["actor", "quantile"],
        )
        waiting = GaugeMetricFamily(
            "newsrec_task_queue_wait_seconds",
            "Time in queue (enqueued to started) of tasks started in the last hour (enqueued in it)",
            labels=["actor", "quantile"],
        )
        for s in hour:
            for outcome, value in (
                ("succeeded", s.succeeded),
                ("failed", s.failed),
                ("retried", s.retried),
                ("running", s.running),
                ("queued", s.queued),
            ):
                finished.add_metric([s.actor_name, outcome], value)
            for quantile, seconds in (("0.5", s.p50), ("0.95", s.p95)):
                if seconds is not None:
                    duration.add_metric([s.actor_name, quantile], seconds)
            for quantile, seconds in (("0.5", s.wait_p50), ("0.95", s.wait_p95)):
                if seconds is not None:
                    waiting.add_metric([s.actor_name, quantile], seconds)
        yield finished
        yield duration
        yield waiting

        depth = GaugeMetricFamily("newsrec_queue_messages", "Messages in the broker", labels=["queue", "state"])
        workers = GaugeMetricFamily("newsrec_workers_live", "Worker processes with a live heartbeat")
        up = GaugeMetricFamily("newsrec_broker_up", "1 when Redis answered this scrape")
        try:
            with queue_errors_as_unavailable():
                for q in monitoring.queue_depths():
                    for state, value in (
                        ("ready", q.ready),
                        ("delayed", q.delayed),
                        ("in_flight", q.in_flight),
                        ("dead_lettered", q.dead_lettered),
                    ):
                        depth.add_metric([q.name, state], value)
                workers.add_metric([], len(live_workers(dramatiq.get_broker())))
            up.add_metric([], 1)
        except QueueUnavailable:
            logger.warning("metrics: broker unavailable", exc_info=True)
            up.add_metric([], 0)
        yield depth
        yield workers
        yield up
        scraped = GaugeMetricFamily("newsrec_metrics_scraped_at", "When these figures were computed (unix time)")
        scraped.add_metric([], datetime.now(UTC).timestamp())
        yield scraped


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics (Prometheus text format); needs `Authorization: Bearer <METRICS_TOKEN>` if that is set."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return HttpResponse("metrics need the bearer token\n", status=401, content_type="text/plain")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TaskCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
