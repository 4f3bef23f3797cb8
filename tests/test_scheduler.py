"""The scheduler only enqueues, and two schedulers enqueue each slot once (real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings

from newsrec.scheduler import build_scheduler
from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.schedules import run_job, slot_for

EVERY_5 = CronTrigger.from_crontab("*/5 * * * *", timezone=UTC)


@pytest.fixture
def client():
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(f"{redis_keys.namespace()}:schedule:*"):
        client.delete(key)
    yield client
    for key in client.scan_iter(f"{redis_keys.namespace()}:schedule:*"):
        client.delete(key)


def test_a_job_running_just_after_its_fire_time_belongs_to_that_slot():
    assert slot_for(EVERY_5, datetime(2026, 11, 2, 10, 5, 0, 300_000, tzinfo=UTC)) == datetime(
        2026, 11, 2, 10, 5, tzinfo=UTC
    )
    # A scheduler a few seconds late still claims the same slot as a punctual one.
    assert slot_for(EVERY_5, datetime(2026, 11, 2, 10, 5, 4, tzinfo=UTC)) == datetime(2026, 11, 2, 10, 5, tzinfo=UTC)


def test_two_schedulers_enqueue_each_slot_once(client, broker, db):
    first = run_job(client, "process-pending-articles", "process_pending_articles", EVERY_5)
    second = run_job(client, "process-pending-articles", "process_pending_articles", EVERY_5)
    assert first is not None and second is None
    assert broker.client.llen(f"{broker.namespace}:processing") == 1


def test_jobs_come_from_settings():
    scheduler = build_scheduler(startup_delay=-1)
    assert {job.id for job in scheduler.get_jobs()} == set(settings.SCHEDULE)
