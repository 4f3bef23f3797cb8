"""APScheduler wiring: periodic jobs that only enqueue the sweep actors named in settings.SCHEDULE.

Several schedulers may run by mistake (or on purpose, for availability): before sending, each job
claims its time slot in Redis with SET NX, so every slot is enqueued exactly once across all of them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import dramatiq
import redis
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings

logger = logging.getLogger(__name__)

SLOT_KEY_TTL_SECONDS = 24 * 3600
# A job runs a few milliseconds after its fire time; looking back this far finds the slot it runs for.
SLOT_LOOKBACK = timedelta(seconds=30)


def slot_for(trigger: CronTrigger, now: datetime) -> datetime:
    """The fire time a job running at `now` belongs to."""
    slot = trigger.get_next_fire_time(None, now - SLOT_LOOKBACK)
    return slot if slot is not None and slot <= now + SLOT_LOOKBACK else now.replace(second=0, microsecond=0)


def claim_slot(client: redis.Redis, job_id: str, slot: datetime) -> bool:
    key = f"newsrec:schedule:{job_id}:{slot.isoformat()}"
    return bool(client.set(key, "1", nx=True, ex=SLOT_KEY_TTL_SECONDS))


def run_job(client: redis.Redis, job_id: str, actor_name: str, trigger: CronTrigger, *, catch_up: bool = False) -> str | None:
    """Enqueue the job's actor if this scheduler won the slot; returns the message id or None."""
    now = datetime.now(UTC)
    if catch_up:
        # Start-up runs of several schedulers started together share one slot: that minute.
        won = claim_slot(client, f"{job_id}:startup", now.replace(second=0, microsecond=0))
    else:
        won = claim_slot(client, job_id, slot_for(trigger, now))
    if not won:
        logger.info("%s: slot already taken by another scheduler", job_id)
        return None
    actor = dramatiq.get_broker().get_actor(actor_name)
    message = actor.send_with_options(origin="scheduler")
    client.hset(
        f"newsrec:schedule:last:{job_id}",
        mapping={"at": now.isoformat(), "message_id": message.message_id},
    )
    logger.info("%s: enqueued %s as %s", job_id, actor_name, message.message_id)
    return message.message_id


def build_scheduler(*, startup_delay: float = 5.0) -> BlockingScheduler:
    """One cron job per settings.SCHEDULE entry, plus one catch-up run of each shortly after start."""
    import pipeline.actors  # noqa: F401 - declares the actors on the broker

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=10)
    scheduler = BlockingScheduler(timezone=UTC)
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
