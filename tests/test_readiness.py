"""`/readyz` per component and the offline API docs: in-process first, then a real stack whose Redis and
workers are stopped under it (tests/support/faults.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import urllib.error
import urllib.request

import pytest

from tests.support.faults import Stack, wait_until


@pytest.mark.django_db
def test_readyz_names_the_queue_without_a_worker(client, broker, fresh_vector_index, settings) -> None:  # type: ignore[no-untyped-def]
    settings.READYZ_QUEUES = ["scraping", "processing"]
    settings.READYZ_SCHEDULER_MAX_AGE_SECONDS = 0
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["postgres"]["ok"] and checks["redis"]["ok"] and checks["vector_index"]["ok"]
    assert checks["workers"] == {
        "ok": False,
        "workers_per_queue": {"scraping": 0, "processing": 0},
        "error": "no live worker on processing, scraping",
        "ms": checks["workers"]["ms"],
    }
    assert checks["scheduler"]["ok"] and "not checked" in checks["scheduler"]["note"]
    assert client.get("/healthz").status_code == 200  # liveness is not readiness


@pytest.mark.django_db
def test_readyz_without_a_scheduler_heartbeat_is_unready(client, broker, fresh_vector_index, settings) -> None:  # type: ignore[no-untyped-def]
    settings.READYZ_QUEUES = []
    checks = client.get("/readyz").json()["checks"]
    assert checks["scheduler"]["ok"] is False and checks["scheduler"]["error"] == "no scheduler heartbeat"


def test_api_docs_load_their_scripts_from_this_server(client) -> None:  # type: ignore[no-untyped-def]
    for path in ("/api/docs/", "/api/redoc/"):
        page = client.get(path).content.decode()
        assert not re.findall(r'(?:src|href)="(?:https?:)?//', page), "nothing may come from another host"
        scripts = re.findall(r'src="([^"]+)"', page)
        assert scripts and all(src.startswith("/static/drf_spectacular_sidecar/") for src in scripts), scripts
        for src in scripts:
            served = client.get(src)
            assert served.status_code == 200 and b"".join(served.streaming_content)


def _readyz(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=20) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@pytest.mark.e2e
def test_readyz_turns_503_when_redis_or_a_queues_workers_stop() -> None:
    with Stack.running(READYZ_QUEUES="scraping,processing") as stack:
        scraping = stack.start_worker("scraping")
        stack.start_worker("processing")
        stack.start_scheduler()
        _, base = stack.start_web()
        wait_until(lambda: _readyz(base)[0] == 200, timeout=90, what="ready with every worker and the scheduler up")

        stack.redis.stop()
        status, body = wait_until(lambda: (r := _readyz(base))[0] == 503 and r, timeout=15, what="503 without Redis")
        assert not body["checks"]["redis"]["ok"] and body["checks"]["postgres"]["ok"]

        stack.redis.start()  # empty: the workers and the scheduler write their heartbeats again
        wait_until(lambda: _readyz(base)[0] == 200, timeout=90, what="ready again once Redis is back")

        # The worst way to stop: SIGKILL, so no shutdown hook deletes the heartbeat; readiness goes by its age.
        os.killpg(scraping.pid, signal.SIGKILL)
        status, body = wait_until(lambda: (r := _readyz(base))[0] == 503 and r, timeout=20, what="503 with no scraper")
        assert body["checks"]["workers"]["workers_per_queue"] == {"scraping": 0, "processing": 1}
