"""Queues, workers, stats, /metrics, retention and the commands, read from the real Redis and Postgres."""

from __future__ import annotations

import io
import os
import threading
from datetime import UTC, datetime, timedelta

import dramatiq
import pytest
import redis
from apscheduler.triggers.cron import CronTrigger
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from newsrec.scheduler import build_scheduler
from pipeline.taskqueue import monitoring, redis_keys, schedules
from pipeline.taskqueue.buffer import flush_task_records
from pipeline.taskqueue.dead_letters import list_dead_letters, requeue_dead_letters
from pipeline.taskqueue.heartbeats import live_workers
from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.retention import purge_task_records
from tests.support import record_actors
from tests.support.task_records import record
from tests.test_records import start_worker, stop_worker, wait_until


@pytest.fixture
def records_queue(broker):
    broker.declare_queue(record_actors.QUEUE)
    broker.flush(record_actors.QUEUE)
    yield record_actors.QUEUE
    broker.flush(record_actors.QUEUE)


def depth(name: str) -> monitoring.QueueDepth:
    return {q.name: q for q in monitoring.queue_depths()}[name]


def test_queue_depths_come_from_the_broker(db, records_queue, broker):
    for i in range(3):
        record_actors.echo.send(i)
    record_actors.echo.send_with_options(args=(9,), delay=60_000)
    assert (depth(records_queue).ready, depth(records_queue).delayed, depth(records_queue).in_flight) == (3, 1, 0)
    # A worker fetches without acknowledging yet: in flight.
    consumer = broker.consume(records_queue, prefetch=2, timeout=100)
    assert next(consumer) is not None
    assert (depth(records_queue).ready, depth(records_queue).in_flight) == (1, 2)
    consumer.close()


def test_dead_letters_are_listed_counted_and_requeued_once(db, records_queue, broker):
    message = record_actors.echo.send("poison")
    consumer = broker.consume(records_queue, prefetch=1, timeout=100)
    proxy = next(consumer)
    consumer.nack(proxy)  # what a worker does when retries are exhausted
    assert depth(records_queue).dead_lettered == 1 and depth(records_queue).ready == 0
    [letter] = list_dead_letters(records_queue)
    assert letter.message_id == message.message_id and letter.message.args == ("poison",)

    assert requeue_dead_letters(records_queue, ["someone-else"]) == []
    assert requeue_dead_letters(records_queue) == [message.message_id]
    assert requeue_dead_letters(records_queue) == []  # moved once: no duplicate
    assert depth(records_queue).ready == 1 and depth(records_queue).dead_lettered == 0
    flush_task_records()
    requeued = TaskRecord.objects.get(message_id=message.message_id)
    assert requeued.status == "enqueued" and requeued.attempt == 2  # the next attempt: moves forward
    consumer.close()


def test_requeue_dead_command(db, records_queue, broker):
    record_actors.echo.send("a")
    consumer = broker.consume(records_queue, prefetch=1, timeout=100)
    consumer.nack(next(consumer))
    consumer.close()
    out = io.StringIO()
    call_command("requeue_dead", "--queue", records_queue, stdout=out)
    assert "1 message(s) requeued" in out.getvalue()
    with pytest.raises(CommandError, match="unknown queue"):
        call_command("requeue_dead", "--queue", "no-such-queue")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_live_workers_say_what_they_run_and_dead_ones_leave_stuck_tasks(records_queue, broker):
    message = record_actors.sleep_then_echo.send(30, "long")
    proc = start_worker(threads=2)
    try:
        worker = wait_until(
            lambda: next(
                (w for w in live_workers(broker) if any(r["message_id"] == message.message_id for r in w.running)),
                None,
            ),
            what="a heartbeat listing the task",
        )
        assert worker.queues == [records_queue] and worker.threads == 2
        assert worker.running[0]["message_id"] == message.message_id
        out = io.StringIO()
        call_command("queues", stdout=out)
        assert f"running sleep_then_echo {message.message_id}" in out.getvalue()
        running = wait_until(lambda: TaskRecord.objects.filter(status="running").first(), what="the running record")
        assert running.worker == worker.name
        assert monitoring.stuck_tasks(live_workers(broker)) == []
    finally:
        stop_worker(proc, kill=True)
    # Killed: its heartbeat key would expire within the TTL; drop it now instead of waiting.
    broker.client.delete(redis_keys.worker_heartbeat(worker.name))
    TaskRecord.objects.filter(pk=running.pk).update(started_at=datetime.now(UTC) - timedelta(minutes=5))
    [stuck] = monitoring.stuck_tasks(live_workers(broker))
    assert stuck.record.message_id == message.message_id and worker.name in stuck.reason


def test_stats_per_actor_over_the_window(db):
    now = datetime.now(UTC)
    for seconds in (1, 2, 3, 4, 100):
        record("succeeded", started_at=now - timedelta(seconds=seconds), finished_at=now)
    record("dead-lettered", attempt=4, started_at=now, finished_at=now)
    record("running", actor_name="process_articles")
    record("succeeded", enqueued_at=now - timedelta(hours=3), started_at=now, finished_at=now)
    hour = {s.actor_name: s for s in monitoring.actor_stats(timedelta(hours=1))}
    scrape = hour["scrape_feed"]
    assert (scrape.succeeded, scrape.failed, scrape.retried) == (5, 1, 1)
    assert scrape.p50 == pytest.approx(2.5, abs=0.01) and scrape.p95 > 50  # of 0, 1, 2, 3, 4 and 100 s
    assert hour["process_articles"].running == 1
    assert {s.actor_name: s for s in monitoring.actor_stats(timedelta(days=1))}["scrape_feed"].succeeded == 6
    buckets = monitoring.throughput(timedelta(hours=1))
    assert sum(ok for _, ok, _ in buckets) == 6 and sum(bad for _, _, bad in buckets) == 1


def test_metrics_endpoint(client, db, broker, settings):
    record("succeeded", started_at=datetime.now(UTC) - timedelta(seconds=2), finished_at=datetime.now(UTC))
    record_actors.echo.send(1)
    body = client.get("/metrics").content.decode()
    assert 'newsrec_tasks{actor="scrape_feed",status="succeeded"} 1.0' in body
    assert 'newsrec_queue_messages{queue="records-test",state="ready"} 1.0' in body
    assert 'newsrec_task_duration_seconds{actor="scrape_feed",quantile="0.5"}' in body
    assert "newsrec_broker_up 1.0" in body
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_old_records_are_purged_in_batches(db):
    old = [record(enqueued_at=datetime.now(UTC) - timedelta(days=8)) for _ in range(7)]
    recent = record(enqueued_at=datetime.now(UTC) - timedelta(days=6))
    assert purge_task_records(batch_size=3) == 7
    assert list(TaskRecord.objects.values_list("pk", flat=True)) == [recent.pk]
    assert old
    out = io.StringIO()
    call_command("purge_task_records", "--days", "5", stdout=out)
    assert "deleted 1 task record(s)" in out.getvalue()


def test_purge_is_a_scheduled_job(db):
    assert settings.SCHEDULE["purge-task-records"]["actor"] == "purge_task_records"
    assert dramatiq.get_broker().get_actor("purge_task_records")


def test_a_paused_job_skips_its_runs_until_resumed(db, broker):
    client = redis.Redis.from_url(settings.REDIS_URL)
    every_5 = CronTrigger.from_crontab("*/5 * * * *", timezone=UTC)
    try:
        schedules.pause_job("process-pending-articles", client)
        assert schedules.run_job(client, "process-pending-articles", "process_pending_articles", every_5) is None
        schedules.resume_job("process-pending-articles", client)
        task_id = schedules.run_job(client, "process-pending-articles", "process_pending_articles", every_5)
        assert task_id and TaskRecord.objects.get(message_id=task_id).origin == "scheduler"
    finally:
        for key in client.scan_iter(f"{redis_keys.namespace()}:schedule:*"):
            client.delete(key)


def test_a_running_scheduler_says_so_for_the_schedules_page(db):
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(redis_keys.scheduler_alive())
    assert schedules.scheduler_alive(client) is None
    running = build_scheduler(startup_delay=-1)
    thread = threading.Thread(target=running.start, daemon=True)
    thread.start()
    try:
        alive = wait_until(lambda: schedules.scheduler_alive(client), timeout=10, what="the scheduler heartbeat")
        assert alive.endswith(f":{os.getpid()}")
    finally:
        running.shutdown(wait=False)
        thread.join(10)
        client.delete(redis_keys.scheduler_alive())
