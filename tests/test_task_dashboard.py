"""The operators' dashboard (pipeline/admin/dashboard.py): queue depths, workers, last hour's failures, scheduler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from tests.support.task_records import record

pytestmark = pytest.mark.django_db
DASHBOARD = "/admin/pipeline/taskrecord/dashboard/"


def staff_client(group: str | None) -> Client:
    user = get_user_model().objects.create_user(f"d-{group}", password="pw-12345678", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def test_dashboard_counts_the_last_hours_failures_per_actor(broker) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    for _ in range(2):
        record("failed", actor_name="scrape_feed", error_type="FetchError", finished_at=now - timedelta(minutes=5))
    record("dead-lettered", actor_name="process_articles", finished_at=now - timedelta(minutes=1))
    record("failed", actor_name="process_articles", finished_at=now - timedelta(hours=3))  # outside the hour
    record("succeeded", finished_at=now)
    broker.enqueue(broker.get_actor("scrape_due_feeds").message())

    body = staff_client("newsrec viewers").get(DASHBOARD).content.decode()
    assert '<b class="bad">3</b> failed (1 h)' in body
    assert 'process_articles</a></td><td class="bad">1</td>' in body
    assert 'scrape_feed</a></td><td class="bad">2</td>' in body
    assert "<tr><td>scraping</td><td>1</td>" in body  # one message ready on the scraping queue
    assert "No scheduler has sent a heartbeat lately." in body
    assert "scrape-due-feeds" in body and 'http-equiv="refresh"' in body


def test_dashboard_is_for_the_task_groups_only() -> None:
    assert staff_client(None).get(DASHBOARD).status_code == 403
