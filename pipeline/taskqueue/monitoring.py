"""What the queues and stats pages, `manage.py queues` and /metrics show: read from the broker and records.

Queue depths come from the Redis keys of Dramatiq's broker (see pipeline.taskqueue.dead_letters): "ready" is
the queue's list, "in flight" the messages fetched by a worker and not yet acknowledged (bodies in
`<queue>.msgs` not in the list; this includes messages a worker has prefetched), "delayed" the delay
queue's bodies (retries waiting for their backoff, delayed sends), "dead-lettered" the `.XQ` set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dramatiq
from django.db import connection
from django.db.models import Count, QuerySet

from pipeline.taskqueue.broker import redis_client
from pipeline.taskqueue.dead_letters import dead_letter_queues, queue_keys
from pipeline.taskqueue.heartbeats import HEARTBEAT_TTL_SECONDS, LiveWorker
from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.names import FINISHED_RANK, STATUS_RANK, Status

WINDOWS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass
class QueueDepth:
    name: str
    ready: int
    delayed: int
    in_flight: int
    dead_lettered: int


def queue_depths(broker: dramatiq.Broker | None = None) -> list[QueueDepth]:
    broker = broker or dramatiq.get_broker()
    names = dead_letter_queues(broker)
    pipe = redis_client(broker).pipeline(transaction=False)
    for name in names:
        keys = queue_keys(name)
        pipe.llen(keys["ready"])
        pipe.hlen(keys["messages"])
        pipe.hlen(keys["delayed"])
        pipe.zcard(keys["dead"])
    values = pipe.execute()
    depths = []
    for i, name in enumerate(names):
        ready, bodies, delayed, dead = values[4 * i : 4 * i + 4]
        depths.append(QueueDepth(name, ready, delayed, max(bodies - ready, 0), dead))
    return depths


@dataclass
class StuckTask:
    record: TaskRecord
    reason: str


def stuck_tasks(workers: list[LiveWorker], *, limit: int = 100) -> list[StuckTask]:
    """Records still "running" whose worker has no heartbeat (it died or was killed). Dramatiq gives
    their messages to another worker once the broker's heartbeat timeout has passed; until the re-run
    writes its own rows the record cannot know, so it is flagged here."""
    live = {w.name for w in workers}
    grace = datetime.now(UTC) - timedelta(seconds=HEARTBEAT_TTL_SECONDS)
    running = TaskRecord.objects.filter(status=TaskRecord.Status.RUNNING, started_at__lt=grace).order_by("started_at")
    stuck = []
    for record in running[: limit * 5]:
        if record.worker not in live:
            stuck.append(StuckTask(record, f"worker {record.worker or '?'} has no heartbeat"))
            if len(stuck) >= limit:
                break
    return stuck


@dataclass
class ActorStats:
    actor_name: str
    succeeded: int
    failed: int
    retried: int
    running: int
    queued: int
    p50: float | None
    p95: float | None
    # Time in queue: enqueued → started of the latest attempt, so a retry's backoff and a delayed send's
    # delay count as waiting (Flower's "received → started" per task; here as percentiles per actor).
    wait_p50: float | None = None
    wait_p95: float | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed


_TABLE = TaskRecord._meta.db_table
_STATS = f"""
SELECT actor_name,
       count(*) FILTER (WHERE status = '{Status.SUCCEEDED}'),
       count(*) FILTER (WHERE status IN ('{Status.FAILED}', '{Status.SKIPPED}', '{Status.DEAD_LETTERED}')),
       count(*) FILTER (WHERE attempt > 1),
       count(*) FILTER (WHERE status = '{Status.RUNNING}'),
       count(*) FILTER (WHERE status_rank < {STATUS_RANK[Status.RUNNING]}),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE status_rank >= {FINISHED_RANK} AND finished_at >= started_at),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at))
           FILTER (WHERE status_rank >= {FINISHED_RANK} AND finished_at >= started_at),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at))
           FILTER (WHERE started_at >= enqueued_at),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - enqueued_at))
           FILTER (WHERE started_at >= enqueued_at)
FROM {_TABLE}
WHERE enqueued_at >= %s
GROUP BY actor_name
ORDER BY actor_name
"""


def actor_stats(window: timedelta) -> list[ActorStats]:
    """Per actor, over the tasks enqueued in the last `window`: outcomes, how many needed a retry, the
    median and 95th percentile of the duration of the finished ones and of the time the started ones
    waited in the queue (seconds)."""
    with connection.cursor() as cursor:
        cursor.execute(_STATS, [datetime.now(UTC) - window])
        rows = cursor.fetchall()
    return [
        ActorStats(name, ok, failed, retried, running, queued, _float(p50), _float(p95), _float(w50), _float(w95))
        for name, ok, failed, retried, running, queued, p50, p95, w50, w95 in rows
    ]


def _float(value: object) -> float | None:
    return float(value) if value is not None else None  # type: ignore[arg-type]


_THROUGHPUT = f"""
SELECT floor(extract(epoch FROM finished_at) / %(bucket)s)::bigint AS slot,
       count(*) FILTER (WHERE status = '{Status.SUCCEEDED}'),
       count(*) FILTER (WHERE status <> '{Status.SUCCEEDED}')
FROM {_TABLE}
WHERE enqueued_at >= %(since)s - interval '1 day' AND finished_at >= %(since)s
GROUP BY slot ORDER BY slot
"""


def throughput(window: timedelta, buckets: int = 24) -> list[tuple[datetime, int, int]]:
    """Finished tasks per time bucket over the window: (bucket start, succeeded, failed), all buckets."""
    bucket = max(int(window.total_seconds() // buckets), 1)
    now = datetime.now(UTC)
    first = int((now - window).timestamp()) // bucket
    with connection.cursor() as cursor:
        cursor.execute(_THROUGHPUT, {"bucket": bucket, "since": datetime.fromtimestamp(first * bucket, UTC)})
        counts = {slot: (ok, bad) for slot, ok, bad in cursor.fetchall()}
    last = int(now.timestamp()) // bucket
    return [(datetime.fromtimestamp(slot * bucket, UTC), *counts.get(slot, (0, 0))) for slot in range(first, last + 1)]


def status_counts(queryset: QuerySet[TaskRecord] | None = None) -> dict[str, int]:
    """How many records are in each status (of the queryset given, e.g. the admin's filtered list)."""
    queryset = TaskRecord.objects.all() if queryset is None else queryset
    counts = dict.fromkeys(TaskRecord.Status.values, 0)
    for row in queryset.order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts
