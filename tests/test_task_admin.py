"""The task admin: list, search, filters, escaped detail, actions, permission groups, and its pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from pipeline.taskqueue import schedules
from pipeline.taskqueue.models import TaskRecord
from tests.support.task_records import record

pytestmark = pytest.mark.django_db
SCRIPT = "<script>alert('x')</script>"


def client_in(group: str | None) -> Client:
    user = get_user_model().objects.create_user(f"u-{group}", password="pw-12345678", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def viewer() -> Client:
    return client_in("newsrec viewers")


@pytest.fixture
def operator() -> Client:
    return client_in("newsrec operators")


@pytest.fixture
def schedule_keys():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in client.scan_iter("newsrec:schedule:*"):
        client.delete(key)


LIST = "/admin/pipeline/taskrecord/"


def test_the_groups_exist_with_their_permissions():
    viewers = set(Group.objects.get(name="newsrec viewers").permissions.values_list("codename", flat=True))
    operators = set(Group.objects.get(name="newsrec operators").permissions.values_list("codename", flat=True))
    assert viewers == {"view_taskrecord"}
    # Operators also run feeds, topics and labels (articles/roles.py, tests/test_roles.py).
    assert {
        "view_taskrecord",
        "delete_taskrecord",
        "retry_taskrecord",
        "requeue_dead_letters",
        "manage_schedules",
    } <= operators


def test_list_filters_search_and_status_counts(viewer):
    ok = record("succeeded", args=["https://feeds.example/world.xml"])
    failed = record("failed", actor_name="process_articles", queue_name="processing", origin="scheduler")
    old = record("enqueued", enqueued_at=datetime.now(UTC) - timedelta(days=3))
    page = viewer.get(LIST).content.decode()
    assert all(r.message_id in page for r in (ok, failed, old))
    assert re.search(r">succeeded</span></a>&nbsp;1", page) and re.search(r">failed</span></a>&nbsp;1", page)
    assert "location.reload" in page  # refreshes itself

    def listed(query: str) -> set[str]:
        body = viewer.get(LIST + query).content.decode()
        return {r.message_id for r in (ok, failed, old) if r.message_id in body}

    assert listed("?status=failed") == {failed.message_id}
    assert listed("?actor_name=process_articles") == {failed.message_id}
    assert listed("?queue_name=scraping") == {ok.message_id, old.message_id}
    assert listed("?origin=scheduler") == {failed.message_id}
    assert listed("?within=24h") == {ok.message_id, failed.message_id}
    assert listed("?q=FEEDS.example") == {ok.message_id}
    assert listed(f"?q={failed.message_id}") == {failed.message_id}
    assert viewer.get(LIST + "?o=7").status_code == 200  # sorted by duration


def test_detail_shows_everything_escaped(viewer):
    r = record(
        "failed",
        args=[SCRIPT],
        kwargs={"url": SCRIPT},
        result={"html": SCRIPT},
        error_type="ValueError",
        error_message=SCRIPT,
        traceback=f"Traceback\n  {SCRIPT}",
        worker="h:1",
    )
    page = viewer.get(f"{LIST}{r.pk}/change/").content.decode()
    assert SCRIPT not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 4  # arguments, keyword arguments, result, error, traceback


def test_viewers_look_but_cannot_act(viewer, broker):
    r = record("failed")
    assert viewer.get(f"{LIST}{r.pk}/change/").status_code == 200
    assert "Retry with the same arguments" not in viewer.get(f"{LIST}{r.pk}/change/").content.decode()
    assert viewer.post(f"{LIST}{r.pk}/retry/").status_code == 403
    # Actions a user may not run are not offered: posting them anyway does nothing.
    page = viewer.get(LIST).content.decode()
    assert "retry_tasks" not in page and "delete_selected" not in page
    viewer.post(LIST, {"action": "retry_tasks", "_selected_action": [r.pk]})
    viewer.post(LIST, {"action": "delete_selected", "_selected_action": [r.pk], "post": "yes"})
    viewer.post(LIST, {"action": "requeue_dead_lettered", "_selected_action": [r.pk]})
    assert not TaskRecord.objects.filter(retry_of=r.message_id).exists()
    assert TaskRecord.objects.filter(pk=r.pk).exists()


def test_people_outside_the_groups_see_nothing():
    nobody = client_in(None)
    assert nobody.get(LIST).status_code == 403
    assert nobody.get(LIST + "queues/").status_code == 403


def test_operators_retry_linked_to_the_original(operator, broker):
    r = record("failed", args=[42], kwargs={"chain": False})
    response = operator.post(f"{LIST}{r.pk}/retry/")
    new = TaskRecord.objects.get(retry_of=r.message_id)
    assert response.status_code == 302 and response.url.endswith(f"/{new.pk}/change/")
    assert (new.args, new.kwargs, new.origin, new.status) == ([42], {"chain": False}, "admin", "enqueued")
    original = operator.get(f"{LIST}{r.pk}/change/").content.decode()
    assert new.message_id in original  # "retried as ..."

    response = operator.post(LIST, {"action": "retry_tasks", "_selected_action": [r.pk]}, follow=True)
    assert "1 task(s) sent again" in response.content.decode()
    assert TaskRecord.objects.filter(retry_of=r.message_id).count() == 2


def test_retrying_a_running_task_is_refused_with_a_reason(operator, broker):
    r = record("running")
    response = operator.post(LIST, {"action": "retry_tasks", "_selected_action": [r.pk]}, follow=True)
    assert "is running" in response.content.decode()
    assert not TaskRecord.objects.filter(retry_of=r.message_id).exists()


def test_operators_delete(operator):
    r = record("succeeded")
    response = operator.post(LIST, {"action": "delete_selected", "_selected_action": [r.pk], "post": "yes"})
    assert response.status_code == 302 and not TaskRecord.objects.filter(pk=r.pk).exists()


def test_pages_render_for_viewers(viewer, broker, schedule_keys):
    record("succeeded", started_at=datetime.now(UTC) - timedelta(seconds=2), finished_at=datetime.now(UTC))
    record(
        "dead-lettered", attempt=4, started_at=datetime.now(UTC) - timedelta(seconds=1), finished_at=datetime.now(UTC)
    )
    for page, expected in (
        ("queues/", "Live workers"),
        ("stats/", "Per actor"),
        ("stats/?window=day", "last day"),
        ("stats/?window=nonsense", "last hour"),
        ("schedules/", "scrape-due-feeds"),
    ):
        response = viewer.get(LIST + page)
        assert response.status_code == 200, page
        body = response.content.decode()
        assert expected in body and 'http-equiv="refresh"' in body, page
    stats = viewer.get(LIST + "stats/").content.decode()
    assert "<svg" in stats and "scrape_feed" in stats
    # Buttons only for those who may press them, and pressing them is refused.
    assert ">Run now</button>" not in viewer.get(LIST + "schedules/").content.decode()
    assert viewer.post(LIST + "schedules/scrape-due-feeds/pause/").status_code == 403


def test_operators_run_pause_and_resume_scheduled_jobs(operator, broker, schedule_keys):
    response = operator.post(LIST + "schedules/process-pending-articles/run/", follow=True)
    assert "queued as task" in response.content.decode()
    task = TaskRecord.objects.get(actor_name="process_pending_articles")
    assert task.origin == "admin" and broker.client.llen(f"{broker.namespace}:processing") == 1
    job = {j.job_id: j for j in schedules.schedule_overview()}["process-pending-articles"]
    assert job.last_task_id == task.message_id and job.last_status == "enqueued" and job.last_run_by == "admin"

    operator.post(LIST + "schedules/process-pending-articles/pause/")
    job = {j.job_id: j for j in schedules.schedule_overview()}["process-pending-articles"]
    assert job.paused and job.next_run is None
    assert ">Resume</button>" in operator.get(LIST + "schedules/").content.decode()

    operator.post(LIST + "schedules/process-pending-articles/resume/")
    assert not {j.job_id: j for j in schedules.schedule_overview()}["process-pending-articles"].paused
    assert operator.post(LIST + "schedules/no-such-job/run/").status_code == 404
    assert operator.post(LIST + "schedules/process-pending-articles/explode/").status_code == 404
