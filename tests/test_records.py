"""Task records: one row per message whose state only moves forward, whatever order writes land in."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import dramatiq
import pytest

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.buffer import RecordBuffer, flush_task_records
from pipeline.taskqueue.dead_letters import list_dead_letters, requeue_dead_letters
from pipeline.taskqueue.middleware import write_transition
from pipeline.taskqueue.models import TaskRecord
from pipeline.taskqueue.rows import Row, cap_result, merge_rows, message_attempt
from pipeline.taskqueue.upsert import upsert_rows, write_rows
from tests.support import record_actors


def make_message(retries: int = 0) -> dramatiq.Message:
    message = dramatiq.Message(
        queue_name="scraping",
        actor_name="scrape_feed",
        args=(7,),
        kwargs={},
        options={"origin": "api"},
        message_id="00000000-0000-0000-0000-000000000001",
    )
    if retries:
        message.options["retries"] = retries
    return message


TRANSITIONS = [
    (0, "enqueued", {}),
    (0, "running", {"worker": "host:1"}),
    (0, "failed", {"error_type": "OSError", "error_message": "boom"}),
    (1, "retrying", {}),
    (1, "running", {"worker": "host:2"}),
    (1, "succeeded", {"result": '{"ok": true}'}),
]


@pytest.mark.django_db
@pytest.mark.parametrize("order", list(itertools.islice(itertools.permutations(range(len(TRANSITIONS))), 0, None, 37)))
def test_final_record_is_right_whatever_the_write_order(order):
    for i in order:
        retries, status, fields = TRANSITIONS[i]
        write_transition(make_message(retries), status, **fields)
    record = TaskRecord.objects.get()
    assert (record.status, record.attempt, record.result) == ("succeeded", 2, {"ok": True})
    assert record.args == [7] and record.origin == "api"


@pytest.mark.django_db
def test_late_enqueue_write_does_not_undo_a_finish():
    write_transition(make_message(), "succeeded", result="1")
    write_transition(make_message(), "enqueued")
    write_transition(make_message(), "running")
    assert TaskRecord.objects.get().status == "succeeded"


def test_results_are_capped_and_marked():
    assert cap_result({"a": 1}) == '{"a": 1}'
    assert '"truncated": true' in cap_result("x" * 100_000)
    assert '"truncated": true' in cap_result({1, 2})  # a set is not JSON
    assert cap_result(None) is None


# --- The buffer: rows of one message merged in memory, then written, give the same record ---

FULL_HISTORY = [
    (0, "enqueued", {}),
    (0, "running", {"worker": "host:1", "started_at": "2026-11-02T10:00:01+00:00"}),
    (0, "failed", {"error_type": "OSError", "error_message": "boom", "finished_at": "2026-11-02T10:00:02+00:00"}),
    (1, "retrying", {}),
    (1, "running", {"worker": "host:2", "started_at": "2026-11-02T10:01:00+00:00"}),
    (1, "succeeded", {"result": '{"ok": true}', "finished_at": "2026-11-02T10:01:03+00:00"}),
]
COLUMNS = [
    "status",
    "attempt",
    "status_rank",
    "outcome_key",
    "started_at",
    "finished_at",
    "worker",
    "result",
    "error_type",
    "error_message",
    "enqueued_at",
    "args",
    "origin",
]


def history_row(i: int) -> Row:
    retries, status, fields = FULL_HISTORY[i]
    fields = {k: datetime.fromisoformat(v) if k.endswith("_at") else v for k, v in fields.items()}
    message = dataclasses.replace(make_message(retries), message_timestamp=1_793_000_000_000)
    return Row(message, status, message_attempt(message), **fields)


def record_state() -> tuple:
    return tuple(TaskRecord.objects.values_list(*COLUMNS).get())


@pytest.mark.django_db
def test_expected_final_record():
    for i in range(len(FULL_HISTORY)):
        upsert_rows([history_row(i)])
    status, attempt, rank, outcome, started, finished, worker, result, error_type, *_ = record_state()
    assert (status, attempt, worker, result, error_type) == ("succeeded", 2, "host:2", {"ok": True}, "")
    assert (finished - started).total_seconds() == 3


@pytest.mark.django_db
@pytest.mark.parametrize("order", list(itertools.islice(itertools.permutations(range(len(FULL_HISTORY))), 0, None, 53)))
@pytest.mark.parametrize("split", [1, 3])
def test_merging_in_memory_then_writing_equals_writing_one_by_one(order, split):
    """Each process merges the rows it holds before writing; any grouping and any order give one record."""
    for i in order:
        upsert_rows([history_row(i)])
    expected = record_state()
    TaskRecord.objects.all().delete()

    first, second = order[:split], order[split:]
    for part in (second, first):  # the later batch lands first
        merged = None
        for i in part:
            merged = history_row(i) if merged is None else merge_rows(merged, history_row(i))
        upsert_rows([merged])
    assert record_state() == expected


@pytest.mark.django_db
def test_enqueue_time_survives_a_worker_write_landing_first():
    message = make_message()
    upsert_rows([Row(message, "succeeded", 1, finished_at=datetime.now(UTC))])
    upsert_rows([Row(message, "enqueued", 1)])
    record = TaskRecord.objects.get()
    assert record.status == "succeeded"
    assert record.enqueued_at == datetime.fromtimestamp(message.message_timestamp / 1000, UTC)


@pytest.mark.django_db
def test_text_postgres_cannot_store_is_replaced_and_html_kept_as_text():
    message = dramatiq.Message(
        queue_name="scraping",
        actor_name="scrape_feed",
        args=("a\x00b", "<script>alert(1)</script>"),
        kwargs={"k\x00": "v"},
        options={},
    )
    upsert_rows(
        [Row(message, "failed", 1, error_message="bad\x00byte", traceback="tb\x00", finished_at=datetime.now(UTC))]
    )
    record = TaskRecord.objects.get()
    assert record.args == ["a\ufffdb", "<script>alert(1)</script>"]
    assert record.kwargs == {"k\ufffd": "v"} and record.error_message == "bad\ufffdbyte"


@pytest.mark.django_db
def test_one_row_postgres_refuses_does_not_lose_the_others(caplog):
    good = make_message()
    bad = dramatiq.Message(
        queue_name="q", actor_name="a", args=(), kwargs={}, options={}, message_id="not-a-36-char-id-" + "x" * 40
    )  # longer than the column
    assert write_rows([Row(good, "enqueued", 1), Row(bad, "enqueued", 1)])
    assert list(TaskRecord.objects.values_list("message_id", flat=True)) == [good.message_id]
    assert "dropped the task record update" in caplog.text


@pytest.mark.django_db
def test_buffered_rows_are_written_in_batches_and_on_flush(settings):
    settings.TASK_RECORD_BATCH_SIZE = 10
    settings.TASK_RECORD_FLUSH_INTERVAL_MS = 60_000
    buffer = RecordBuffer()
    messages = [dramatiq.Message(queue_name="q", actor_name="a", args=(i,), kwargs={}, options={}) for i in range(25)]
    for message in messages[:9]:
        buffer.add(Row(message, "enqueued", 1))
    assert TaskRecord.objects.count() == 0 and buffer.pending_count() == 9
    # In a test everything runs inside a transaction: size-triggered flushes wait for an explicit one.
    for message in messages[9:]:
        buffer.add(Row(message, "enqueued", 1))
    buffer.add(Row(messages[0], "running", 1, started_at=datetime.now(UTC), worker="h:1"))  # merged
    assert buffer.pending_count() == 25
    buffer.flush()
    assert TaskRecord.objects.count() == 25 and buffer.pending_count() == 0
    assert TaskRecord.objects.get(message_id=messages[0].message_id).status == "running"


def test_results_that_cannot_be_stored_become_marked_previews():
    huge = json.loads(cap_result("x" * 100_000))
    assert huge["truncated"] is True and "bytes" in huge["reason"] and len(huge["preview"]) == 1000

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert json.loads(cap_result(Unprintable()))["reason"] == "not JSON-serialisable"
    assert json.loads(cap_result(float("nan"))) != {}  # JSON's NaN extension is accepted by json.dumps


# --- Real worker processes ---

ROOT = Path(__file__).resolve().parent.parent


def worker_env(**extra: str) -> dict[str, str]:
    from django.db import connection

    db = connection.settings_dict
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def start_worker(threads: int = 4, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dramatiq",
            "tests.support.record_actors",
            "-p",
            "1",
            "-t",
            str(threads),
            "-Q",
            record_actors.QUEUE,
        ],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen, *, kill: bool = False) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def records_queue(broker):
    broker.declare_queue(record_actors.QUEUE)
    broker.flush(record_actors.QUEUE)
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        stop_worker(proc)
    broker.flush(record_actors.QUEUE)
    # A killed worker's heartbeat outlives it by up to its TTL: do not let later tests see it.
    for key in broker.client.scan_iter(match=redis_keys.worker_heartbeat_pattern()):
        broker.client.delete(key)


def wait_until(predicate, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_drains_a_burst_and_every_record_converges(records_queue):
    messages = [record_actors.echo.send_with_options(args=(f"<script>{i}</script>",), origin="api") for i in range(300)]
    flush_task_records()
    echoes = TaskRecord.objects.filter(actor_name="echo")
    assert echoes.filter(status="enqueued").count() == 300
    records_queue.append(start_worker())
    wait_until(lambda: echoes.filter(status="succeeded").count() == 300, what="300 succeeded records")
    record = TaskRecord.objects.get(message_id=messages[7].message_id)
    assert record.result == {"echo": "<script>7</script>"} and record.args == ["<script>7</script>"]
    assert record.attempt == 1 and record.origin == "api" and record.worker and record.duration is not None
    # Acknowledged only once recorded: nothing is left in the broker, nothing still "running".
    assert not echoes.exclude(status="succeeded").exists()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_bad_results_are_marked_and_the_worker_keeps_going(records_queue):
    odd = record_actors.returns_unserialisable.send()
    huge = record_actors.returns_huge.send()
    after = record_actors.echo.send(1)
    records_queue.append(start_worker())
    wait_until(lambda: TaskRecord.objects.filter(status="succeeded").count() == 3, what="3 succeeded records")
    assert TaskRecord.objects.get(message_id=odd.message_id).result["reason"] == "not JSON-serialisable"
    assert TaskRecord.objects.get(message_id=huge.message_id).result["truncated"] is True
    assert TaskRecord.objects.get(message_id=after.message_id).result == {"echo": 1}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_retries_then_dead_letter_then_requeue_moves_the_record_forward(records_queue, broker):
    message = record_actors.always_fails.send("poison")
    records_queue.append(start_worker())
    record = wait_until(
        lambda: TaskRecord.objects.filter(message_id=message.message_id, status="dead-lettered").first(),
        what="the message to be dead-lettered",
    )
    assert record.attempt == 2 and record.error_type == "RuntimeError" and "poison fails" in record.traceback
    assert [d.message_id for d in list_dead_letters(record_actors.QUEUE)] == [message.message_id]

    assert requeue_dead_letters(record_actors.QUEUE) == [message.message_id]
    assert list_dead_letters(record_actors.QUEUE) == []
    record = wait_until(
        lambda: TaskRecord.objects.filter(message_id=message.message_id, status="dead-lettered", attempt=4).first(),
        what="the requeued message to run twice more and be dead-lettered again",
    )
    assert record.enqueued_at == datetime.fromtimestamp(message.message_timestamp / 1000, UTC)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_task_whose_worker_is_killed_converges_when_the_message_is_run_again(records_queue):
    """SIGKILL mid-task: nothing of that worker's buffer survives, Redis redelivers the message, and the
    other worker's run writes the record to the end."""
    fast = {"DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "2000", "DRAMATIQ_MAINTENANCE_CHANCE": "1000000"}
    message = record_actors.sleep_then_echo.send(4, "survivor")
    first = start_worker(**fast)
    records_queue.append(first)
    running = wait_until(
        lambda: TaskRecord.objects.filter(message_id=message.message_id, status="running").first(),
        what="the task to start",
    )
    stop_worker(first, kill=True)
    records_queue.append(start_worker(**fast))
    record = wait_until(
        lambda: TaskRecord.objects.filter(message_id=message.message_id, status="succeeded").first(),
        timeout=90,
        what="the re-run to finish",
    )
    assert record.result == {"echo": "survivor"} and record.attempt == 1
    assert record.worker != running.worker and record.started_at > running.started_at


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_database_is_down_still_processes_its_messages(records_queue, broker):
    """Records are never worth a lost or stuck message: with Postgres unreachable the worker logs,
    keeps the updates to retry, and acknowledges anyway."""
    for i in range(20):
        record_actors.echo.send(i)
    records_queue.append(start_worker(DATABASE_URL="postgres://postgres@127.0.0.1:9/nowhere"))
    queue = f"{broker.namespace}:{record_actors.QUEUE}"
    wait_until(
        lambda: broker.client.llen(queue) == 0 and broker.client.hlen(queue + ".msgs") == 0,
        what="the worker to process and acknowledge every message",
    )


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_messages_are_acknowledged_only_after_their_records_commit_without_holding_up_the_worker(records_queue, broker):
    """With the records table locked, a worker of 2 threads still runs all 30 messages (its threads do
    not wait for each commit) yet acknowledges none: their bodies stay in Redis. Once the lock goes the
    records land, and only then the acknowledgements."""
    import psycopg
    from django.db import connection

    queue = f"{broker.namespace}:{record_actors.QUEUE}"
    trace = f"{broker.namespace}:test-trace"
    broker.client.delete(trace)
    for i in range(30):
        record_actors.mark.send(trace, str(i))
    flush_task_records()  # the "enqueued" rows, before the table is locked
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"] or "localhost", port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as lock:
        lock.execute(f"LOCK TABLE {TaskRecord._meta.db_table} IN EXCLUSIVE MODE")  # writes wait; reads do not
        records_queue.append(start_worker(threads=2))
        wait_until(lambda: broker.client.scard(trace) == 30, timeout=45, what="all 30 messages run while records wait")
        time.sleep(1)  # time enough for an acknowledgement that did not wait to reach Redis
        assert broker.client.hlen(queue + ".msgs") == 30, "a message was acknowledged before its record committed"
        assert TaskRecord.objects.filter(actor_name="mark", status="succeeded").count() == 0
        lock.rollback()
    wait_until(
        lambda: broker.client.hlen(queue + ".msgs") == 0 and broker.client.llen(queue) == 0,
        what="every message acknowledged once its record is written",
    )
    assert TaskRecord.objects.filter(actor_name="mark", status="succeeded").count() == 30
    broker.client.delete(trace)
