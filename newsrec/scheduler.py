"""APScheduler wiring: periodic jobs that only enqueue the sweep actors named in settings.SCHEDULE.

Several schedulers may run by mistake (or on purpose, for availability): before sending, each job
claims its time slot in Redis with SET NX, so every slot is enqueued exactly once across all of them.

The admin's schedules page works across processes through Redis too: "pause" adds the job to the set
`newsrec:schedule:paused`, which every scheduler reads when a job fires (a paused job skips its runs
until resumed, across scheduler restarts); "run now" enqueues the job's actor from the web process
itself (it works with no scheduler running); each run's time and task id are kept in the hash
`newsrec:schedule:last:<job>`, and a running scheduler refreshes `newsrec:scheduler:alive`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dramatiq
import redis
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings

logger = logging.getLogger(__name__)

SLOT_KEY_TTL_SECONDS = 24 * 3600
PAUSED_KEY = "newsrec:schedule:paused"
ALIVE_KEY = "newsrec:scheduler:alive"
ALIVE_EVERY_SECONDS = 30
ALIVE_TTL_SECONDS = 90
# A job runs a few milliseconds after its fire time; looking back this far finds the slot it runs for.
SLOT_LOOKBACK = timedelta(seconds=30)


def slot_for(trigger: CronTrigger, now: datetime) -> datetime:
    """The fire time a job running at `now` belongs to."""
    slot = trigger.get_next_fire_time(None, now - SLOT_LOOKBACK)
    return slot if slot is not None and slot <= now + SLOT_LOOKBACK else now.replace(second=0, microsecond=0)


def claim_slot(client: redis.Redis, job_id: str, slot: datetime) -> bool:
    key = f"newsrec:schedule:{job_id}:{slot.isoformat()}"
    return bool(client.set(key, "1", nx=True, ex=SLOT_KEY_TTL_SECONDS))


def last_run_key(job_id: str) -> str:
    return f"newsrec:schedule:last:{job_id}"


def _send(client: redis.Redis, job_id: str, actor_name: str, *, origin: str, now: datetime) -> str:
    from pipeline.records import flush_task_records

    actor = dramatiq.get_broker().get_actor(actor_name)
    message = actor.send_with_options(origin=origin)
    client.hset(
        last_run_key(job_id),
        mapping={"at": now.isoformat(), "message_id": message.message_id, "by": origin},
    )
    flush_task_records()  # the record exists before the next run, however rare runs are
    return message.message_id


def run_job(
    client: redis.Redis, job_id: str, actor_name: str, trigger: CronTrigger, *, catch_up: bool = False
) -> str | None:
    """Enqueue the job's actor if this scheduler won the slot; returns the message id or None."""
    now = datetime.now(UTC)
    if client.sismember(PAUSED_KEY, job_id):
        logger.info("%s: paused, skipping this run", job_id)
        return None
    if catch_up:
        # Start-up runs of several schedulers started together share one slot: that minute.
        won = claim_slot(client, f"{job_id}:startup", now.replace(second=0, microsecond=0))
    else:
        won = claim_slot(client, job_id, slot_for(trigger, now))
    if not won:
        logger.info("%s: slot already taken by another scheduler", job_id)
        return None
    message_id = _send(client, job_id, actor_name, origin="scheduler", now=now)
    logger.info("%s: enqueued %s as %s", job_id, actor_name, message_id)
    return message_id


class HeartbeatingScheduler(BlockingScheduler):
    """A BlockingScheduler that says it is alive in Redis while it runs (for the schedules page)."""

    def __init__(self, client: redis.Redis, **options: object) -> None:
        super().__init__(**options)
        self._client = client
        self._stopped = threading.Event()

    def start(self, *args: object, **kwargs: object) -> None:
        self._stopped.clear()
        threading.Thread(target=self._beat, name="scheduler-heartbeat", daemon=True).start()
        try:
            super().start(*args, **kwargs)
        finally:
            self._stopped.set()

    def _beat(self) -> None:
        while not self._stopped.is_set():
            try:
                self._client.set(ALIVE_KEY, f"{socket.gethostname()}:{os.getpid()}", ex=ALIVE_TTL_SECONDS)
            except redis.RedisError:
                logger.warning("could not refresh the scheduler heartbeat", exc_info=True)
            self._stopped.wait(ALIVE_EVERY_SECONDS)


def build_scheduler(*, startup_delay: float = 5.0) -> BlockingScheduler:
    """One cron job per settings.SCHEDULE entry, plus one catch-up run of each shortly after start."""
    import pipeline.actors  # noqa: F401 - declares the actors on the broker

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=10)
    scheduler = HeartbeatingScheduler(client, timezone=UTC)
    for job_id, spec in settings.SCHEDULE.items():
        trigger = CronTrigger.from_crontab(spec["cron"], timezone=UTC)
        scheduler.add_job(
            run_job,
            trigger,
            args=[client, job_id, spec["actor"], trigger],
            id=job_id,
            name=f"{job_id} ({spec['cron']})",
            misfire_grace_time=60,
            coalesce=True,
            max_instances=1,
        )
        if startup_delay >= 0:
            scheduler.add_job(
                run_job,
                "date",
                run_date=datetime.now(UTC) + timedelta(seconds=startup_delay),
                args=[client, job_id, spec["actor"], trigger],
                kwargs={"catch_up": True},
                id=f"{job_id}:startup",
                name=f"{job_id} (once at start-up)",
            )
    return scheduler


# --- The admin's schedules page ---


@dataclass
class ScheduledJob:
    job_id: str
    actor_name: str
    cron: str
    paused: bool
    next_run: datetime | None
    last_run: datetime | None
    last_task_id: str
    last_run_by: str
    last_status: str  # the last run's task record status, "" when unknown


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=3)


class UnknownJob(KeyError):
    pass


def _spec(job_id: str) -> dict[str, str]:
    try:
        return settings.SCHEDULE[job_id]
    except KeyError:
        raise UnknownJob(job_id) from None


def schedule_overview(client: redis.Redis | None = None) -> list[ScheduledJob]:
    """Every job of settings.SCHEDULE with its trigger, next run, last run and that run's outcome."""
    from pipeline.models import TaskRecord

    client = client or redis_client()
    now = datetime.now(UTC)
    paused = {p.decode() for p in client.smembers(PAUSED_KEY)}
    jobs = []
    for job_id, spec in settings.SCHEDULE.items():
        last = {k.decode(): v.decode() for k, v in client.hgetall(last_run_key(job_id)).items()}
        trigger = CronTrigger.from_crontab(spec["cron"], timezone=UTC)
        jobs.append(
            ScheduledJob(
                job_id=job_id,
                actor_name=spec["actor"],
                cron=spec["cron"],
                paused=job_id in paused,
                next_run=None if job_id in paused else trigger.get_next_fire_time(None, now),
                last_run=datetime.fromisoformat(last["at"]) if "at" in last else None,
                last_task_id=last.get("message_id", ""),
                last_run_by=last.get("by", "scheduler" if last else ""),
                last_status="",
            )
        )
    statuses = dict(
        TaskRecord.objects.filter(message_id__in=[j.last_task_id for j in jobs if j.last_task_id]).values_list(
            "message_id", "status"
        )
    )
    for job in jobs:
        job.last_status = statuses.get(job.last_task_id, "")
    return jobs


def scheduler_alive(client: redis.Redis | None = None) -> str | None:
    """host:pid of a running scheduler, or None when none has refreshed its heartbeat lately."""
    value = (client or redis_client()).get(ALIVE_KEY)
    return value.decode() if value else None


def run_job_now(job_id: str, *, origin: str, client: redis.Redis | None = None) -> str:
    """Enqueue the job's actor at once, outside its schedule (from the web process); returns the task id."""
    spec = _spec(job_id)
    return _send(client or redis_client(), job_id, spec["actor"], origin=origin, now=datetime.now(UTC))


def pause_job(job_id: str, client: redis.Redis | None = None) -> None:
    _spec(job_id)
    (client or redis_client()).sadd(PAUSED_KEY, job_id)


def resume_job(job_id: str, client: redis.Redis | None = None) -> None:
    _spec(job_id)
    (client or redis_client()).srem(PAUSED_KEY, job_id)
