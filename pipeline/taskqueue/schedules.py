"""The Redis side of the periodic jobs in settings.SCHEDULE, shared by every scheduler and web process.

Several schedulers may run by mistake (or on purpose, for availability): before sending, each job
claims its time slot in Redis with SET NX, so every slot is enqueued exactly once across all of them.
"Pause" adds the job to a set that every scheduler reads when a job fires (a paused job skips its
runs until resumed, across scheduler restarts); "run now" enqueues the job's actor from the web
process itself (it works with no scheduler running); each run's time and task id are kept per job,
and a running scheduler refreshes its heartbeat. The keys are in pipeline.taskqueue.redis_keys.
The scheduler process itself (APScheduler) is newsrec/scheduler.py.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dramatiq
import redis
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_client, text
from pipeline.taskqueue.buffer import flush_task_records
from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.names import Origin

logger = logging.getLogger(__name__)

SLOT_KEY_TTL_SECONDS = 24 * 3600
ALIVE_TTL_SECONDS = 90
# A job runs a few milliseconds after its fire time; looking back this far finds the slot it runs for.
SLOT_LOOKBACK = timedelta(seconds=30)


def slot_for(trigger: CronTrigger, now: datetime) -> datetime:
    """The fire time a job running at `now` belongs to."""
    slot = trigger.get_next_fire_time(None, now - SLOT_LOOKBACK)
    return slot if slot is not None and slot <= now + SLOT_LOOKBACK else now.replace(second=0, microsecond=0)


def claim_slot(client: redis.Redis, job_id: str, slot: datetime) -> bool:
    return bool(client.set(redis_keys.schedule_slot(job_id, slot), "1", nx=True, ex=SLOT_KEY_TTL_SECONDS))


def _send(client: redis.Redis, job_id: str, actor_name: str, *, origin: str, now: datetime) -> str:
    actor = dramatiq.get_broker().get_actor(actor_name)
    message = actor.send_with_options(origin=origin)
    client.hset(
        redis_keys.schedule_last_run(job_id),
        mapping={"at": now.isoformat(), "message_id": message.message_id, "by": origin},
    )
    flush_task_records()  # the record exists before the next run, however rare runs are
    return message.message_id


def run_job(
    client: redis.Redis, job_id: str, actor_name: str, trigger: CronTrigger, *, catch_up: bool = False
) -> str | None:
    """Enqueue the job's actor if this scheduler won the slot; returns the message id or None."""
    now = datetime.now(UTC)
    if client.sismember(redis_keys.schedule_paused(), job_id):
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
    message_id = _send(client, job_id, actor_name, origin=Origin.SCHEDULER, now=now)
    logger.info("%s: enqueued %s as %s", job_id, actor_name, message_id)
    return message_id


def mark_scheduler_alive(client: redis.Redis) -> None:
    client.set(redis_keys.scheduler_alive(), f"{socket.gethostname()}:{os.getpid()}", ex=ALIVE_TTL_SECONDS)


def scheduler_alive(client: redis.Redis | None = None) -> str | None:
    """host:pid of a running scheduler, or None when none has refreshed its heartbeat lately."""
    value = (client or redis_client()).get(redis_keys.scheduler_alive())
    return text(value) if value else None


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


class UnknownJob(KeyError):
    pass


def _spec(job_id: str) -> dict[str, str]:
    try:
        return settings.SCHEDULE[job_id]
    except KeyError:
        raise UnknownJob(job_id) from None


def schedule_overview(client: redis.Redis | None = None) -> list[ScheduledJob]:
    """Every job of settings.SCHEDULE with its trigger, next run, last run and that run's outcome."""
    client = client or redis_client()
    now = datetime.now(UTC)
    paused = {text(p) for p in client.smembers(redis_keys.schedule_paused())}
    jobs = []
    for job_id, spec in settings.SCHEDULE.items():
        last = {text(k): text(v) for k, v in client.hgetall(redis_keys.schedule_last_run(job_id)).items()}
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
                last_run_by=last.get("by", Origin.SCHEDULER if last else ""),
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


def run_job_now(job_id: str, *, origin: str, client: redis.Redis | None = None) -> str:
    """Enqueue the job's actor at once, outside its schedule (from the web process); returns the task id."""
    spec = _spec(job_id)
    return _send(client or redis_client(), job_id, spec["actor"], origin=origin, now=datetime.now(UTC))


def pause_job(job_id: str, client: redis.Redis | None = None) -> None:
    _spec(job_id)
    (client or redis_client()).sadd(redis_keys.schedule_paused(), job_id)


def resume_job(job_id: str, client: redis.Redis | None = None) -> None:
    _spec(job_id)
    (client or redis_client()).srem(redis_keys.schedule_paused(), job_id)
