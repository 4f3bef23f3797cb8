"""Redis high availability with Sentinel, for real: a private master, a replica and three Sentinels
(tests/support/sentinels.py), a private Postgres, and newsrec processes configured with REDIS_SENTINELS.

The unit-level test checks that every Redis client newsrec builds (broker, results backend, cache,
redis_client()) finds the master through the Sentinels and follows a failover. The end-to-end test
kills (SIGKILL) or freezes (SIGSTOP) the master under a batch of work in flight and checks that workers, web and the
scheduler carry on against the promoted replica without a restart, and that every article ends up
processed exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.failover_stack import (
    NAMESPACE,
    PostUntilAccepted,
    api_token,
    deliveries,
    leftover_message_ids,
    leftover_report,
    sentinel_stack,
)
from tests.support.faults import SlowFeedServer, held_by_workers, redelivered, wait_until
from tests.support.sentinels import SentinelGroup, redis_server_missing, sentinel_group

pytestmark = pytest.mark.skipif(bool(redis_server_missing()), reason=redis_server_missing() or "")

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.mark.e2e
# Its own waits add up to more than the suite's 300 s per test (a message that failed in the failover is
# retried after 60-120 s): they, not the global limit, say what did not happen.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("fault", ["kill", "freeze"])
def test_master_lost_under_load_sentinel_promotes_the_replica_and_nothing_is_lost_or_done_twice(fault: str):
    """kill: SIGKILL, connections are refused. freeze: SIGSTOP, connections hang until their 5 s read
    timeout (the TimeoutError path); once the replica is promoted the old master is let go on again,
    and the Sentinels turn it into a replica of the new one (READONLY to anyone still writing to it)."""
    feeds = SlowFeedServer(feeds=1, items_per_feed=FEED_ITEMS)
    try:
        with sentinel_stack() as (stack, group):
            token = api_token(stack)
            stack.insert_pending_articles(PENDING)
            # Scraped only on request (through the web API, during the failover): the chain then sends
            # its new articles to processing from the scraping worker.
            stack.run_django(
                "from datetime import timedelta\nfrom django.utils import timezone\nfrom articles.models import Feed\n"
                f"Feed.objects.create(url={feeds.urls[0]!r}, title='on request', full_text='never',"
                " next_fetch_at=timezone.now() + timedelta(days=1))\n"
            )
            feed_id = stack.scalar("SELECT id FROM articles_feed WHERE title = 'on request'")
            env = {"PROCESSING_BATCH_SIZE": str(BATCH)}
            processing = stack.start_worker("processing", **env)
            scraping = stack.start_worker("scraping", threads=2, **env)
            scheduler = stack.start_scheduler("--no-startup-run", **env)
            web, base = stack.start_web(**env)
            stack.manage("process", **env)  # the sweep: claims the pending articles, PENDING / BATCH messages

            # The fault once the processing worker is well into the batch.
            wait_until(
                lambda: len(stack.processing_events()) >= 3 * BATCH,
                timeout=300,
                what="three batches processed",
            )
            processed_at_fault = len(stack.processing_events())
            group.master.signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
            fault_at = time.time()
            poster = PostUntilAccepted(f"{base}/api/feeds/{feed_id}/scrape/", {"Authorization": f"Token {token}"})
            poster.start()
            promoted_at = group.wait_for_promotion()
            if fault == "freeze":
                group.master.signal(signal.SIGCONT)
                wait_until(
                    lambda: group.master.client().info("replication")["role"] == "slave",
                    timeout=60,
                    what="the old master turned into a replica",
                )
            poster.join(timeout=150)
            accepted = [at for at, status in poster.answers if status == 202]
            assert accepted, poster.answers
            refused = Counter(status for _, status in poster.answers if status != 202)
            assert set(refused) <= {503}, poster.answers  # never a hang or a 500

            # Messages the old master had not yet passed to the replica (sent, fetched or acknowledged in
            # its last moment) are healed by the processing sweep, as after a Redis restart: an article
            # claimed more than a minute ago whose message is in no queue of the new master is queued
            # again. The scheduler runs that sweep every few minutes; here the test runs it (manage.py
            # process) every few seconds until everything is processed.
            expected = PENDING + FEED_ITEMS

            def all_processed() -> bool:
                if stack.article_counts().get("processed", 0) >= expected:
                    return True
                stack.manage("process", **env)
                return False

            try:
                wait_until(all_processed, timeout=300, interval=5, what=f"{expected} articles processed")
            except TimeoutError:
                articles = stack.query(
                    "SELECT status, claimed_by, queued_at IS NOT NULL, count(*) FROM articles_article"
                    " WHERE status <> 'processed' GROUP BY 1, 2, 3"
                )
                records = stack.query("SELECT actor_name, status, count(*) FROM pipeline_taskrecord GROUP BY 1, 2")
                client = group.current_master_client()
                raise AssertionError(
                    f"{expected} articles not processed in 300 s; not processed (status, claim, queued):"
                    f" {articles}; records: {records}\n{leftover_report(stack, client)}"
                ) from None

            # The scheduler writes its heartbeat to the new master without a restart.
            client = group.current_master_client()
            assert client.connection_pool.connection_kwargs["port"] == group.replica.port
            client.delete(f"{NAMESPACE}:scheduler:alive")
            wait_until(
                lambda: client.get(f"{NAMESPACE}:scheduler:alive"),
                timeout=90,
                what="the scheduler's heartbeat on the new master",
            )
            # The same processes throughout: none died and none was started again.
            assert all(p.alive() for p in (processing, scraping, scheduler, web)), "a process died"
            assert len(stack.processes) == 4
            # Every message acknowledged on the new master (an ack that failed in the failover was retried,
            # not dropped) and no queue left with work in it: strict when the master was killed. A frozen
            # master wakes after the promotion and is, for a moment, still a master: commands that waited in
            # its socket run there and are lost when the Sentinels demote it (a split brain that only
            # `min-replicas-to-write` with a second replica closes). What that leaves on the new master (a
            # message still in a worker's ack set, or its body with no queue entry) must belong to a task
            # that succeeded: it is never run again, or, redelivered when that worker stops, changes nothing.
            held = set().union(*held_by_workers(client, NAMESPACE).values())
            left = leftover_message_ids(client)
            if fault == "kill":
                assert not held and not left, leftover_report(stack, client)

            def leftover_statuses() -> list[tuple[str, str]]:
                return stack.query(
                    "SELECT message_id, status FROM pipeline_taskrecord WHERE message_id = ANY(%s)",
                    [list(held | left)],
                )

            # A record is written a moment after its task ends (group commit): the status of a message that
            # finished as the test looked was read once as "enqueued" and, in the report, as "succeeded".
            try:
                wait_until(
                    lambda: all(status == "succeeded" for _, status in leftover_statuses()),
                    timeout=30,
                    what="the leftovers' records final",
                )
            except TimeoutError:
                pass  # the assertions below say what is wrong
            statuses = leftover_statuses()
            assert len(statuses) == len(held | left), leftover_report(stack, client)
            assert {status for _, status in statuses} <= {"succeeded"}, leftover_report(stack, client)

            log = deliveries(group)
            started_after = {(d["message_id"], d["pid"]) for d in log if d["event"] == "start" and d["at"] > fault_at}
            first_done = min(
                d["at"] for d in log if d["event"] == "done" and (d["message_id"], d["pid"]) in started_after
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
                f"\nsentinel failover ({fault}): {processed_at_fault} of {PENDING} articles processed at the"
                " fault; "
                + " / ".join(f"{k} {v}" for k, v in counts.items())
                + f"\n  fault -> promotion {promoted_at - fault_at:.1f} s; -> first message completed on the new"
                f" master {first_done - fault_at:.1f} s; -> enqueue through the same web process accepted"
                f" {accepted[0] - fault_at:.1f} s (refused before: {dict(refused)})",
                flush=True,
            )
            assert counts["duplicates"] == 0 and counts["lost"] == 0, counts
            # A message the old master took and then lost (the replica never got it; with freeze, also a
            # write it accepted after it woke and before the Sentinels demoted it) keeps its record at
            # "enqueued"; the sweep re-sent its articles in a new message, which succeeded.
            stranded = stack.query(
                "SELECT actor_name, status, args FROM pipeline_taskrecord WHERE status <> 'succeeded'"
            )
            assert {(actor, status) for actor, status, _ in stranded} <= {("process_articles", "enqueued")}, stranded
            resent = stack.query(
                "SELECT args FROM pipeline_taskrecord WHERE status = 'succeeded' AND actor_name = 'process_articles'"
            )
            done_ids = {article for (args,) in resent for article in args[0]}
            assert all(set(args[0]) <= done_ids for _, _, args in stranded), stranded
            print(
                f"  messages lost in the failover and re-sent by the sweep: {len(stranded)}; left on the new"
                f" master by the split brain (tasks that succeeded): {len(held | left)}",
                flush=True,
            )
            assert stack.scalar("SELECT count(*) FROM articles_article") == expected
    finally:
        feeds.close()
