"""Redis high availability with Sentinel, for real: a private master, a replica and three Sentinels
(tests/support/sentinels.py), a private Postgres, and newsrec processes configured with REDIS_SENTINELS.

The unit-level test checks that every Redis client newsrec builds (broker, results backend, cache,
redis_client()) finds the master through the Sentinels and follows a failover. The end-to-end test
kills the master with SIGKILL under a batch of work in flight and checks that workers, web and the
scheduler carry on against the promoted replica without a restart, and that every article ends up
processed exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.faults import (
    AUDIT_SQL,
    DELIVERY_LOG_KEY,
    PrivatePostgres,
    SlowFeedServer,
    Stack,
    redelivered,
    wait_until,
)
from tests.support.sentinels import SentinelGroup, redis_server_missing, sentinel_group

pytestmark = pytest.mark.skipif(bool(redis_server_missing()), reason=redis_server_missing() or "")

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "newsrec"  # the private stack's (Stack.env sets NEWSREC_TEST_NAMESPACE)

# What each client reports in a fresh process: the address its connection pool connects to now, and a
# key it wrote (read back by the test from the master itself).
PROBE = """
import django, json, sys
django.setup()
import dramatiq
from django.core.cache import cache
from dramatiq.results import Results
from pipeline.taskqueue.broker import redis_client

def where(client):
    return list(client.connection_pool.get_master_address())

broker = dramatiq.get_broker()
backend = next(m.backend for m in broker.middleware if isinstance(m, Results))
cache_client = cache._cache.get_client(write=True)
tag = sys.argv[1]
broker.client.set("probe:broker", tag)
backend.client.set("probe:results", tag)
cache.set("probe", tag)
redis_client().set("probe:redis_client", tag)
print(json.dumps({
    "broker": where(broker.client), "results": where(backend.client),
    "cache": where(cache_client), "redis_client": where(redis_client()),
    "broker_class": type(broker).__name__,
}))
"""


def probe(group: SentinelGroup, tag: str) -> dict[str, object]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "NEWSREC_TEST_NAMESPACE": "sentinel-probe",
        **group.env(),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE, tag], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_redis_client_finds_the_master_through_the_sentinels_and_follows_a_failover():
    with sentinel_group() as group:
        before = probe(group, "before")
        master = ["127.0.0.1", group.master.port]
        assert before == {
            "broker": master,
            "results": master,
            "cache": master,
            "redis_client": master,
            "broker_class": "FailoverRedisBroker",
        }
        # REDIS_URL names a port where nothing listens: the writes can only have gone through the Sentinels.
        written = group.master.client()
        assert written.get("probe:broker") == written.get("probe:results") == b"before"
        assert written.get("probe:redis_client") == b"before"
        assert written.get("sentinel-probe:cache:1:probe") is not None

        group.master.signal(signal.SIGKILL)
        group.wait_for_promotion()
        after = probe(group, "after")
        new_master = ["127.0.0.1", group.replica.port]
        assert {key: after[key] for key in ("broker", "results", "cache", "redis_client")} == dict.fromkeys(
            ("broker", "results", "cache", "redis_client"), new_master
        )
        assert group.replica.client().get("probe:broker") == b"after"


# --- End to end: the master killed under load ---

PENDING = 160  # articles queued before the kill, in batches of BATCH
BATCH = 8
FEED_ITEMS = 20  # a feed scraped through the web API after the promotion


@contextmanager
def sentinel_stack() -> Iterator[tuple[Stack, SentinelGroup]]:
    """Private Postgres (as Stack.running makes it) and a Sentinel group instead of a single Redis."""
    root = Path(tempfile.mkdtemp(prefix="newsrec-failover-", dir="/var/tmp"))
    root.chmod(0o755)  # the postgres user must be able to enter it
    for sub in ("pg", "logs"):
        (root / sub).mkdir()
    with sentinel_group() as group:
        stack = Stack(root, PrivatePostgres(root / "pg"), group.master, extra_env=group.env())  # type: ignore[arg-type]
        try:
            stack.postgres.start()
            stack.manage("migrate", "--noinput")
            stack.execute(AUDIT_SQL)
            stack.load_topics()
            yield stack, group
        finally:
            stack.stop_all()
            try:
                stack.postgres.stop("immediate")
            except Exception:  # noqa: BLE001 - best effort after a failed test
                pass
            shutil.rmtree(root, ignore_errors=True)


def deliveries(group: SentinelGroup) -> list[dict[str, object]]:
    """The delivery log (tests.support.delivery_log), read from whichever server is master now. Entries
    the old master had not yet passed to the replica when it died are missing from it."""
    return [json.loads(item) for item in group.current_master_client().lrange(DELIVERY_LOG_KEY, 0, -1)]


def api_token(stack: Stack) -> str:
    return stack.run_django(
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        "user = get_user_model().objects.create_superuser('failover', password='x')\n"
        "result = Token.objects.get_or_create(user=user)[0].key\n"
    )


@pytest.mark.e2e
def test_master_killed_under_load_sentinel_promotes_the_replica_and_nothing_is_lost_or_done_twice():
    feeds = SlowFeedServer(feeds=1, items_per_feed=FEED_ITEMS)
    try:
        with sentinel_stack() as (stack, group):
            token = api_token(stack)
            headers = {"Authorization": f"Token {token}"}
            stack.insert_pending_articles(PENDING)
            env = {"PROCESSING_BATCH_SIZE": str(BATCH)}
            processing = stack.start_worker("processing", **env)
            scraping = stack.start_worker("scraping", threads=2, **env)
            scheduler = stack.start_scheduler("--no-startup-run", **env)
            web, base = stack.start_web(**env)
            stack.manage("process", **env)  # the sweep: claims the pending articles, PENDING / BATCH messages

            # Kill the master once the processing worker is well into the batch.
            wait_until(
                lambda: len(stack.processing_events()) >= 3 * BATCH,
                timeout=300,
                what="three batches processed",
            )
            processed_at_kill = len(stack.processing_events())
            group.master.signal(signal.SIGKILL)
            killed_at = time.time()
            promoted_at = group.wait_for_promotion()

            # Enqueueing works again through the same web process: a feed scraped on request, whose new
            # articles the scraping worker chains to processing.
            stack.run_django(
                f"from articles.models import Feed\nFeed.objects.create(url={feeds.urls[0]!r}, title='after',"
                " full_text='never')\n"
            )
            feed_id = stack.scalar("SELECT id FROM articles_feed WHERE title = 'after'")
            queued = httpx.post(f"{base}/api/feeds/{feed_id}/scrape/", headers=headers, timeout=30)
            assert queued.status_code == 202, queued.text
            enqueued_at = time.time()

            # Messages the dead master had not yet replicated (sent, fetched or acknowledged in its last
            # moment) are healed by the processing sweep, as after a Redis restart: an article claimed
            # more than a minute ago whose message is in no queue of the new master is queued again.
            # The scheduler runs that sweep every few minutes; the test runs it (manage.py process) itself.
            expected = PENDING + FEED_ITEMS

            def all_processed() -> bool:
                if stack.article_counts().get("processed", 0) >= expected:
                    return True
                stack.manage("process", **env)
                return False

            wait_until(all_processed, timeout=300, interval=10, what=f"{expected} articles processed")

            # The scheduler writes its heartbeat to the new master without a restart.
            client = group.current_master_client()
            client.delete(f"{NAMESPACE}:scheduler:alive")
            wait_until(
                lambda: client.get(f"{NAMESPACE}:scheduler:alive"),
                timeout=90,
                what="the scheduler's heartbeat on the new master",
            )
            # The same processes throughout: none died and none was started again.
            assert all(p.alive() for p in (processing, scraping, scheduler, web)), "a process died"
            assert len(stack.processes) == 4

            log = deliveries(group)
            started_after_kill = {
                (d["message_id"], d["pid"]) for d in log if d["event"] == "start" and d["at"] > killed_at
            }
            first_done = min(
                d["at"] for d in log if d["event"] == "done" and (d["message_id"], d["pid"]) in started_after_kill
            )
            events = stack.processing_events()
            records = dict(stack.query("SELECT status, count(*) FROM pipeline_taskrecord GROUP BY status"))
            processed = stack.article_counts().get("processed", 0)
            counts = {
                "sent": sum(records.values()),
                "completed": records.get("succeeded", 0),
                "redelivered": len(redelivered(log)),
                "duplicates": sum(n - 1 for n in events.values() if n > 1),
                "lost": max(0, expected - processed),
            }
            print(
                f"\nsentinel failover: {processed_at_kill} of {PENDING} articles processed at the kill; "
                + " / ".join(f"{k} {v}" for k, v in counts.items())
                + f"\n  kill -> promotion {promoted_at - killed_at:.1f} s, kill -> first message completed on"
                f" the new master {first_done - killed_at:.1f} s, enqueue through web accepted"
                f" {enqueued_at - killed_at:.1f} s after the kill",
                flush=True,
            )
            assert counts["duplicates"] == 0 and counts["lost"] == 0, counts
            assert set(Counter(events.values())) == {1}
            assert stack.scalar("SELECT count(*) FROM articles_article") == expected
    finally:
        feeds.close()
