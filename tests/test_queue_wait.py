"""Time in queue (enqueued → started) per actor: monitoring.actor_stats, the stats page and /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model

from pipeline.taskqueue import monitoring
from tests.support.task_records import record

pytestmark = pytest.mark.django_db


@pytest.fixture
def waits() -> None:
    enqueued = datetime.now(UTC) - timedelta(minutes=10)
    for seconds in (1, 2, 3, 4, 40):
        start = enqueued + timedelta(seconds=seconds)
        record("succeeded", enqueued_at=enqueued, started_at=start, finished_at=start + timedelta(seconds=1))
    record("enqueued", enqueued_at=enqueued)  # still waiting: no start to measure yet
    record("succeeded", actor_name="process_articles", enqueued_at=enqueued, started_at=enqueued)


def test_queue_wait_percentiles_per_actor(waits) -> None:  # type: ignore[no-untyped-def]
    stats = {s.actor_name: s for s in monitoring.actor_stats(timedelta(hours=1))}
    assert stats["scrape_feed"].wait_p50 == pytest.approx(3.0, abs=0.01)
    assert stats["scrape_feed"].wait_p95 == pytest.approx(32.8, abs=0.01)  # between 4 and 40 s, at 95 %
    assert stats["process_articles"].wait_p50 == 0.0


def test_queue_wait_on_the_stats_page_and_in_metrics(waits, client, broker) -> None:  # type: ignore[no-untyped-def]
    client.force_login(get_user_model().objects.create_superuser("ops", password="pw-12345678"))
    page = client.get("/admin/pipeline/taskrecord/stats/").content.decode()
    assert "<th>in queue p50</th>" in page and "3.000 s" in page and "32.800 s" in page
    body = client.get("/metrics").content.decode()
    assert 'newsrec_task_queue_wait_seconds{actor="scrape_feed",quantile="0.5"} 3.0' in body
    assert 'newsrec_task_queue_wait_seconds{actor="process_articles",quantile="0.95"} 0.0' in body
