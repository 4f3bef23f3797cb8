"""The scheduler process (`manage.py runscheduler`): APScheduler cron jobs that only enqueue the sweep
actors named in settings.SCHEDULE. Slot claims, pauses and last runs live in Redis and are handled by
pipeline.taskqueue.schedules, so any number of schedulers enqueue each slot once.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import redis
from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings

import pipeline.actors  # noqa: F401 - declares the actors on the broker, so jobs can find them by name
from pipeline.taskqueue import schedules
from pipeline.taskqueue.broker import redis_client

logger = logging.getLogger(__name__)

ALIVE_EVERY_SECONDS = 30


class HeartbeatingScheduler(BlockingScheduler):
    """A BlockingScheduler that says it is alive in Redis while it runs (for the schedules page)."""

    def __init__(self, client: redis.Redis, **options: object) -> None:
        super().__init__(**options)
        self._client = client
        self._stopped = threading.Event()
        # Beating starts once APScheduler counts itself running, not before: a heartbeat written while
        # start() was still setting up said "alive" of a scheduler that could not yet be shut down.
        self.add_listener(self._start_beating, EVENT_SCHEDULER_STARTED)

    def start(self, *args: object, **kwargs: object) -> None:
        self._stopped.clear()
        try:
            super().start(*args, **kwargs)
        finally:
            self._stopped.set()

    def _start_beating(self, event: object) -> None:
        threading.Thread(target=self._beat, name="scheduler-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stopped.is_set():
            try:
                schedules.mark_scheduler_alive(self._client)
            except redis.RedisError:
                logger.warning("could not refresh the scheduler heartbeat", exc_info=True)
            self._stopped.wait(ALIVE_EVERY_SECONDS)


def build_scheduler(*, startup_delay: float = 5.0) -> BlockingScheduler:
    """One cron job per settings.SCHEDULE entry, plus one catch-up run of each shortly after start."""
    client = redis_client()
    scheduler = HeartbeatingScheduler(client, timezone=UTC)
    for job_id, spec in settings.SCHEDULE.items():
        trigger = CronTrigger.from_crontab(spec["cron"], timezone=UTC)
        scheduler.add_job(
            schedules.run_job,
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
                schedules.run_job,
                "date",
                run_date=datetime.now(UTC) + timedelta(seconds=startup_delay),
                args=[client, job_id, spec["actor"], trigger],
                kwargs={"catch_up": True},
                id=f"{job_id}:startup",
                name=f"{job_id} (once at start-up)",
            )
    return scheduler
