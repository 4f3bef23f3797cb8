"""GET /api/tasks/ filterable like the admin, GET /api/tasks/{id}/, POST /api/tasks/{id}/retry/."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.taskqueue.models import TaskRecord
from tests.support.task_records import record

pytestmark = pytest.mark.django_db


def ids(response) -> set[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content
    return {r["task_id"] for r in response.json()["results"]}


def test_filters_like_the_admin(api):
    ok = record("succeeded", args=["https://feeds.example/world.xml"])
    failed = record("dead-lettered", actor_name="process_articles", queue_name="processing", origin="scheduler")
    queued = record("retrying", origin="pipeline", enqueued_at=datetime.now(UTC) - timedelta(days=2))
    assert ids(api.get("/api/tasks/?status=failed")) == {failed.message_id}
    assert ids(api.get("/api/tasks/?status=queued")) == {queued.message_id}
    assert ids(api.get("/api/tasks/?state=dead-lettered")) == {failed.message_id}
    assert ids(api.get("/api/tasks/?actor_name=process_articles")) == {failed.message_id}
    assert ids(api.get("/api/tasks/?queue_name=scraping")) == {ok.message_id, queued.message_id}
    assert ids(api.get("/api/tasks/?origin=scheduler")) == {failed.message_id}
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(api.get(f"/api/tasks/?since={since}")) == {ok.message_id, failed.message_id}
    assert ids(api.get("/api/tasks/?search=feeds.example/WORLD")) == {ok.message_id}
    assert ids(api.get(f"/api/tasks/?search={ok.message_id}")) == {ok.message_id}


@pytest.mark.parametrize("query", ["status=finished", "state=nope", "since=yesterday", "retry_of=not-a-uuid"])
def test_bad_filters_are_a_400_naming_the_field(api, query):
    response = api.get(f"/api/tasks/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


def test_one_task_with_its_timings_error_and_detailed_state(api):
    started = datetime.now(UTC) - timedelta(seconds=3)
    r = record(
        "dead-lettered",
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        worker="h:1",
        error_type="RuntimeError",
        error_message="boom",
        attempt=4,
    )
    body = api.get(f"/api/tasks/{r.message_id.upper()}/").json()
    assert body["status"] == "failed" and body["state"] == "dead-lettered" and body["attempt"] == 4
    assert body["duration_seconds"] == 2 and body["error_type"] == "RuntimeError" and body["worker"] == "h:1"


def test_unknown_task_is_404(api, operator_api):
    assert api.get(f"/api/tasks/{uuid.uuid4()}/").status_code == 404
    assert operator_api.post(f"/api/tasks/{uuid.uuid4()}/retry/").status_code == 404
    assert operator_api.post("/api/tasks/not-a-task/retry/").status_code == 404


def test_retry_needs_a_user(api):
    r = record("failed")
    assert api.post(f"/api/tasks/{r.message_id}/retry/").status_code in (401, 403)
    assert not TaskRecord.objects.filter(retry_of=r.message_id).exists()


def test_retry_sends_the_same_arguments_linked_to_the_original(operator_api, api, broker):
    r = record("failed", args=[42], kwargs={"chain": False})
    response = operator_api.post(f"/api/tasks/{r.message_id}/retry/")
    assert response.status_code == 202, response.content
    new_id = response.json()["task_id"]
    new = api.get(f"/api/tasks/{new_id}/").json()
    assert (new["status"], new["args"], new["kwargs"], new["retry_of"], new["origin"]) == (
        "queued",
        [42],
        {"chain": False},
        r.message_id,
        "api",
    )
    assert broker.client.llen(f"{broker.namespace}:scraping") == 1
    assert ids(api.get(f"/api/tasks/?retry_of={r.message_id}")) == {new_id}


@pytest.mark.parametrize("status", ["running", "enqueued"])
def test_retrying_an_unfinished_task_is_a_409_with_a_reason(operator_api, broker, status):
    r = record(status)
    response = operator_api.post(f"/api/tasks/{r.message_id}/retry/")
    assert response.status_code == 409
    assert status in response.json()["detail"] or "queued" in response.json()["detail"]
    assert broker.client.llen(f"{broker.namespace}:scraping") == 0


def test_retrying_a_task_of_an_actor_that_no_longer_exists_is_a_409(operator_api, broker):
    r = record("failed", actor_name="gone_actor")
    response = operator_api.post(f"/api/tasks/{r.message_id}/retry/")
    assert response.status_code == 409 and "gone_actor" in response.json()["detail"]
