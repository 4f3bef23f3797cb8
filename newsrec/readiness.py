"""`GET /readyz`: whether this installation can do its work now, one JSON entry per component, 200 or 503.

`/healthz` stays the cheap liveness answer (the process runs, Postgres answers); this one also asks
Redis, looks for a live worker heartbeat on every queue (pipeline.taskqueue.heartbeats: a stopped worker
deletes its key, a killed one stops refreshing its beat time), the scheduler's heartbeat and the
age of its last run, and how far this process's vector index is behind Postgres. Each check catches its
own failure, so one component down never hides the state of the others.

django-health-check would give the Postgres and Redis entries, but not the worker, scheduler and index
checks, which are the point here; six small functions cost less than its plugin classes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dramatiq
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache

from pipeline.search.index_source import newest_stamp
from pipeline.search.vector_index import get_index
from pipeline.taskqueue import schedules
from pipeline.taskqueue.broker import redis_client
from pipeline.taskqueue.dead_letters import dead_letter_queues
from pipeline.taskqueue.heartbeats import live_workers

logger = logging.getLogger(__name__)


def check_postgres() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True}


def check_redis() -> dict[str, Any]:
    return {"ok": bool(redis_client().ping())}


def expected_queues() -> list[str]:
    """The queues that need a worker: READYZ_QUEUES, or every queue the loaded actors declare."""
    return list(settings.READYZ_QUEUES) or dead_letter_queues(dramatiq.get_broker())


def check_workers() -> dict[str, Any]:
    # A killed worker's key lives on for HEARTBEAT_TTL_SECONDS; a beat older than READYZ_WORKER_STALE_SECONDS
    # (two missed beats) already counts as gone, so readiness drops within seconds of a crash.
    fresh_since = time.time() - settings.READYZ_WORKER_STALE_SECONDS
    workers = [w for w in live_workers(dramatiq.get_broker()) if w.beat_at >= fresh_since]
    per_queue = {queue: sum(queue in w.queues for w in workers) for queue in expected_queues()}
    missing = sorted(queue for queue, count in per_queue.items() if count == 0)
    entry: dict[str, Any] = {"ok": not missing, "workers_per_queue": per_queue}
    if missing:
        entry["error"] = f"no live worker on {', '.join(missing)}"
    return entry


def check_scheduler() -> dict[str, Any]:
    max_age = settings.READYZ_SCHEDULER_MAX_AGE_SECONDS
    alive = schedules.scheduler_alive()
    runs = [job.last_run for job in schedules.schedule_overview() if job.last_run is not None]
    age = round((datetime.now(UTC) - max(runs)).total_seconds(), 1) if runs else None
    entry: dict[str, Any] = {"ok": True, "alive": alive, "last_run_age_seconds": age, "max_age_seconds": max_age}
    if max_age <= 0:
        entry["note"] = "not checked (READYZ_SCHEDULER_MAX_AGE_SECONDS=0)"
    elif alive is None:
        entry.update(ok=False, error="no scheduler heartbeat")
    elif age is not None and age > max_age:
        entry.update(ok=False, error=f"last run {age:.0f} s ago, more than {max_age} s")
    return entry


def check_vector_index() -> dict[str, Any]:
    index = get_index()
    index.refresh()  # rate-limited as for a search: what a search would see now
    newest, taken = newest_stamp(), index.caught_up_to
    lag = 0.0 if newest is None else (newest - (taken or 0)) / 1_000_000 if taken is not None else None
    max_lag = settings.READYZ_INDEX_MAX_LAG_SECONDS
    entry: dict[str, Any] = {"ok": True, "size": len(index), "lag_seconds": lag, "max_lag_seconds": max_lag}
    if lag is None or lag > max_lag:
        entry.update(ok=False, error="the index has not caught up with the articles processed in Postgres")
    return entry


CHECKS: dict[str, Callable[[], dict[str, Any]]] = {
    "postgres": check_postgres,
    "redis": check_redis,
    "workers": check_workers,
    "scheduler": check_scheduler,
    "vector_index": check_vector_index,
}


def run_checks() -> dict[str, dict[str, Any]]:
    results = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            entry = check()
        except Exception as error:  # noqa: BLE001 - a component that fails its check is "not ready", not a 500
            logger.warning("readiness check %s failed: %s", name, error)
            entry = {"ok": False, "error": f"{type(error).__name__}: {str(error)[:200]}"}
        entry["ms"] = round((time.monotonic() - started) * 1000, 1)
        results[name] = entry
    return results


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = run_checks()
    ready = all(entry["ok"] for entry in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
