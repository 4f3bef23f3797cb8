"""Bulk actions by filter in the task admin (pipeline/admin/bulk.py): a count to confirm, then the action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from pipeline.taskqueue import monitoring
from pipeline.taskqueue.buffer import flush_task_records
from pipeline.taskqueue.models import TaskRecord
from tests.support import record_actors
from tests.support.task_records import record

pytestmark = pytest.mark.django_db
LIST = "/admin/pipeline/taskrecord/"


def client_in(group: str) -> Client:
    user = get_user_model().objects.create_user(f"b-{group}", password="pw-12345678", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def records_queue(broker):  # type: ignore[no-untyped-def]
    broker.declare_queue(record_actors.QUEUE)
    broker.flush(record_actors.QUEUE)
    yield record_actors.QUEUE
    broker.flush(record_actors.QUEUE)


def dead_letter(broker, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """n real messages in the dead-letter queue, their records saying so (as a worker leaves them)."""
    sent = [record_actors.echo.send(i).message_id for i in range(n)]
    consumer = broker.consume(record_actors.QUEUE, prefetch=n, timeout=100)
    for _ in range(n):
        consumer.nack(next(consumer))
    consumer.close()
    flush_task_records()
    TaskRecord.objects.filter(message_id__in=sent).update(status="dead-lettered", status_rank=4)
    return sent


def test_requeue_every_dead_lettered_task_of_an_actor_after_confirming(records_queue, broker) -> None:  # type: ignore[no-untyped-def]
    letters = dead_letter(broker, 3)
    record("dead-lettered", actor_name="process_articles")  # another actor: the filter leaves it alone
    operator = client_in("newsrec operators")
    listing = operator.get(LIST, {"actor_name": "echo"}).content.decode()
    assert "/admin/pipeline/taskrecord/bulk/requeue/?actor_name=echo" in listing

    confirm = operator.get(LIST + "bulk/requeue/", {"actor_name": "echo"}).content.decode()
    assert "3 task records will be put back on their queues." in confirm
    assert {q.name: q for q in monitoring.queue_depths()}[records_queue].dead_lettered == 3  # nothing done yet

    done = operator.post(LIST + "bulk/requeue/", {"actor_name": "echo"}, follow=True).content.decode()
    assert "3 message(s) put back on their queues." in done
    depth = {q.name: q for q in monitoring.queue_depths()}[records_queue]
    assert (depth.ready, depth.dead_lettered) == (3, 0)
    flush_task_records()
    assert set(TaskRecord.objects.filter(status="enqueued").values_list("message_id", flat=True)) == set(letters)


def test_delete_every_succeeded_record_enqueued_before_a_day(broker) -> None:  # type: ignore[no-untyped-def]
    old = datetime.now(UTC) - timedelta(days=10)
    for _ in range(3):
        record("succeeded", enqueued_at=old)
    recent = record("succeeded")
    old_failure = record("failed", enqueued_at=old)
    operator = client_in("newsrec operators")
    cutoff = (datetime.now(UTC) - timedelta(days=5)).date().isoformat()
    query = {"status__exact": "succeeded", "before": cutoff}
    confirm = operator.get(LIST + "bulk/delete/", query).content.decode()
    assert "3 task records will be deleted." in confirm and 'value="Yes, delete 3"' in confirm
    assert (
        operator.get(LIST + "bulk/delete/", {"status__exact": "succeeded"}).content.decode().count("4 task records")
        == 1
    )

    done = operator.post(LIST + "bulk/delete/", query, follow=True).content.decode()
    assert "3 task record(s) deleted." in done
    assert set(TaskRecord.objects.values_list("pk", flat=True)) == {recent.pk, old_failure.pk}


def test_viewers_get_neither_the_links_nor_the_pages(broker) -> None:  # type: ignore[no-untyped-def]
    record("dead-lettered")
    viewer = client_in("newsrec viewers")
    assert "bulk/" not in viewer.get(LIST).content.decode()
    assert viewer.get(LIST + "bulk/requeue/").status_code == 403
    assert viewer.post(LIST + "bulk/delete/", {"status__exact": "dead-lettered"}).status_code == 403
    assert TaskRecord.objects.count() == 1
