"""`make chaos`: run the real stack, inject each fault on a batch of a few hundred articles, and count.

The stack is what `make run` runs — the [program:…] sections of scripts/supervisord.conf (web,
scraping worker, processing worker, scheduler) under a real supervisord — on a private Postgres and
Redis started here on free ports (tests/support/faults.py), so no fault touches anyone else's servers. Feeds
come from a local HTTP server started here. For each fault a fresh batch is added through the API,
the fault is injected while the batch is in flight, and once everything has settled the script
prints what it counted:

  sent         messages enqueued during the run (task records)
  completed    messages that finished successfully
  redelivered  messages started twice in the same attempt (handed back after a worker died)
  duplicates   articles stored twice or processed more than once
  lost         articles served by the feeds that did not end up stored and processed

Duplicates and lost must be 0; the exit status says whether they were.

Usage: .venv/bin/python scripts/chaos.py [--feeds 6] [--items 50] [--only kill-processing,...]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.faults import (  # noqa: E402 - after the path set-up
    ManagedProcess,
    SlowFeedServer,
    Stack,
    children_running,
    free_port,
    held_by_workers,
    in_hand,
    redelivered,
    starts,
    wait_until,
    worker_processes_of,
)

SETTLE_TIMEOUT = 420  # seconds for a batch to be fully processed after its fault
# Low enough that every batch also exercises worker recycling (processing restarts its process).
MAX_TASKS_PER_CHILD = 10


@dataclass
class Outcome:
    fault: str
    sent: int = 0
    completed: int = 0
    redelivered: int = 0
    duplicates: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Run:
    stack: Stack
    supervisor: ManagedProcess
    base_url: str
    token: str
    feeds_per_batch: int
    items_per_feed: int
    batch: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.base_url + path, headers=self.headers, timeout=60, **kwargs)

    def worker(self, queue: str) -> int:
        """The first worker process of the program consuming `queue` (the processing worker has one)."""
        return self.workers(queue)[0]

    def workers(self, queue: str) -> list[int]:
        """Every worker process of the program consuming `queue`."""
        return wait_until(
            lambda: worker_processes_of(self.supervisor.pid, queue), timeout=120, what=f"{queue} worker processes"
        )

    def start_batch(self, *, delay: float = 0.0) -> SlowFeedServer:
        """Fresh state, a new feed server, its feeds added and scraped through the API."""
        self.batch += 1
        self.stack.reset()
        feeds = SlowFeedServer(self.feeds_per_batch, self.items_per_feed, delay=delay, slow_hits=1)
        for url in feeds.urls:
            # Feed text only: per-host politeness (one page a second) would hold a batch's 300 article pages,
            # all on this one host, past the settle timeout; page fetches have their own crash and burst tests.
            created = self.api("POST", "/api/feeds/", json={"url": url, "full_text": "never"})
            assert created.status_code == 201, created.text
            # Polled again a minute later: a scrape message lost with Redis costs a minute.
            self.stack.execute("UPDATE articles_feed SET fetch_interval = 60 WHERE id = %s", [created.json()["id"]])
            queued = self.api("POST", f"/api/feeds/{created.json()['id']}/scrape/")
            assert queued.status_code == 202, queued.text
        return feeds

    def settle(self, expected: int, *, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait for every article to be processed and for the queues to run empty (dead letters aside)."""
        client = self.stack.redis.client()

        def done() -> bool:
            counts = self.stack.article_counts()
            if counts.get("processed", 0) < expected or counts.get("pending"):
                return False
            keys = [k for k in client.scan_iter("newsrec:*.msgs") if b".XQ." not in k]
            return not any(client.hlen(k) for k in keys)

        try:
            wait_until(done, timeout=timeout, interval=1.0, what=f"{expected} articles processed")
        except TimeoutError as error:
            print(f"  ! {error}: {self.stack.article_counts()}", flush=True)

    def count(self, fault: str, expected: int, started: float) -> Outcome:
        stack = self.stack
        deliveries = stack.deliveries()
        events = stack.processing_events()
        rows = stack.scalar("SELECT count(*) FROM articles_article")
        distinct = stack.scalar("SELECT count(DISTINCT (feed_id, guid)) FROM articles_article")
        processed = stack.article_counts().get("processed", 0)
        records = dict(stack.query("SELECT status, count(*) FROM pipeline_taskrecord GROUP BY status"))
        outcome = Outcome(
            fault,
            sent=sum(records.values()),
            completed=records.get("succeeded", 0),
            redelivered=len(redelivered(deliveries)),
            duplicates=(rows - distinct) + sum(n - 1 for n in events.values() if n > 1),
            lost=max(0, expected - processed),
            seconds=time.monotonic() - started,
        )
        unfinished = {s: n for s, n in records.items() if s not in ("succeeded",)}
        if unfinished:
            outcome.notes.append("records not succeeded: " + ", ".join(f"{n} {s}" for s, n in unfinished.items()))
        processes = {d["pid"] for d in starts(deliveries) if d["queue"] == "processing"}
        outcome.notes.append(f"{len(processes)} processing worker processes (recycled every {MAX_TASKS_PER_CHILD})")
        return outcome


# --- The faults ---


def _kill_worker_and_count(run: Run, feeds, children: list[int], queue: str, name: str, started: float) -> Outcome:  # type: ignore[no-untyped-def]
    """SIGKILL worker processes with messages in hand, let the stack recover, and count the batch."""
    for child in children:
        os.kill(child, signal.SIGKILL)
    killed = time.time()
    held = held_by_workers(run.stack.redis.client()).get(queue, set())
    run.settle(feeds.items)
    outcome = run.count(name, feeds.items, started)
    outcome.notes.insert(
        0, f"{len(held)} message(s) in hand at the kill, back after {_redelivery_delay(run, held, killed)}"
    )
    feeds.close()
    return outcome


def kill_processing_worker(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch()
    child = run.worker("processing")
    wait_until(
        lambda: (
            len([d for d in starts(run.stack.deliveries()) if d["pid"] == child]) >= 3
            and in_hand(run.stack.deliveries(), child)
        ),
        timeout=180,
        interval=0.05,
        what="processing worker in the middle of a batch",
    )
    return _kill_worker_and_count(run, feeds, [child], "processing", "SIGKILL processing worker mid-batch", started)


def kill_scraping_worker(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch(delay=10.0)  # every first fetch takes 10 s: the kill lands mid-fetch
    children = run.workers("scraping")  # -p 2 in supervisord.conf: both, wherever the batches are
    # As many fetches under way as a worker process has threads (-t 4 in supervisord.conf).
    in_flight = min(run.feeds_per_batch, 4)
    wait_until(lambda: sum(feeds.hits.values()) >= in_flight, timeout=120, what=f"{in_flight} feeds being fetched")
    return _kill_worker_and_count(run, feeds, children, "scraping", "SIGKILL scraping worker mid-fetch", started)


def restart_redis(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch()
    wait_until(
        lambda: run.stack.article_counts().get("processed", 0) >= feeds.items // 5,
        timeout=180,
        interval=0.2,
        what="a fifth of the batch processed",
    )
    queued = sum(run.stack.redis.client().hlen(k) for k in run.stack.redis.client().scan_iter("newsrec:*.msgs"))
    run.stack.redis.stop()
    t0 = time.monotonic()
    during = run.api("POST", "/api/process-articles/")
    answered = time.monotonic() - t0
    run.stack.redis.start()  # empty: every queue, heartbeat and result is gone
    restarted = time.time()
    run.settle(feeds.items)
    outcome = run.count("Redis restarted, queues lost", feeds.items, started)
    outcome.notes.insert(
        0,
        f"{queued} message(s) in Redis when it died; API during the outage: "
        f"{during.status_code} in {answered:.2f} s; all processed "
        f"{time.time() - restarted:.0f} s after the restart (next sweeps)",
    )
    feeds.close()
    return outcome


def restart_postgres(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch()
    wait_until(
        lambda: run.stack.article_counts().get("processed", 0) >= feeds.items // 5,
        timeout=180,
        interval=0.2,
        what="a fifth of the batch processed",
    )
    web_pid = children_running(run.supervisor.pid, "gunicorn")
    run.stack.postgres.stop("immediate")  # like a crash: every connection cut, no shutdown checkpoint
    time.sleep(2)
    during = run.api("GET", "/api/articles/")
    time.sleep(3)  # work in flight meanwhile fails, and is retried with the actors' backoff
    run.stack.postgres.start()
    restarted = time.time()
    first = run.api("GET", "/api/articles/")
    run.settle(feeds.items)
    outcome = run.count("Postgres restarted", feeds.items, started)
    failed = {d["message_id"] for d in run.stack.deliveries() if d["event"] == "done" and d["error"]}
    outcome.notes.insert(
        0,
        f"down 5 s: {len(failed)} message(s) failed meanwhile and were retried; API read while down: "
        f"{during.status_code}, first after: {first.status_code}; web process unchanged: "
        f"{children_running(run.supervisor.pid, 'gunicorn') == web_pid}; all processed "
        f"{time.time() - restarted:.0f} s after the restart",
    )
    feeds.close()
    return outcome


def two_schedulers(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch()
    second = run.stack.start_scheduler("--no-startup-run")
    since = datetime.now(UTC)
    # Two full cron minutes with both schedulers running.
    time.sleep(60 - since.second + 125)
    run.settle(feeds.items)
    second.stop()
    outcome = run.count("two schedulers", feeds.items, started)
    rows = run.stack.query(
        "SELECT actor_name, date_trunc('minute', enqueued_at), count(*) FROM pipeline_taskrecord"
        " WHERE origin = 'scheduler' AND enqueued_at > %s GROUP BY 1, 2 ORDER BY 2",
        [since],
    )
    doubled = [(actor, minute, n) for actor, minute, n in rows if n > 1]
    outcome.duplicates += sum(n - 1 for _, _, n in doubled)
    outcome.notes.insert(
        0,
        f"{len(rows)} (job, minute) slots, each enqueued "
        f"{'once' if not doubled else 'MORE THAN ONCE: ' + str(doubled)}",
    )
    feeds.close()
    return outcome


def poison_messages(run: Run) -> Outcome:
    started = time.monotonic()
    feeds = run.start_batch()
    ids = run.stack.run_django(
        "from tests.support.fault_actors import always_fails\n"
        "result = [always_fails.send_with_options(args=(f'p-{i}',), min_backoff=1000, max_backoff=4000)"
        ".message_id for i in range(3)]\n"
    )
    worker = run.stack.start_worker("faults")
    client = run.stack.redis.client()
    wait_until(lambda: client.zcard("newsrec:faults.XQ") == 3, timeout=120, what="3 messages dead-lettered")
    tries = [d["retries"] for d in starts(run.stack.deliveries()) if d["message_id"] in ids]
    dead = run.stack.query(
        "SELECT count(*) FROM pipeline_taskrecord WHERE status = 'dead-lettered'"
        " AND traceback LIKE '%%poison message%%'"
    )[0][0]
    requeued = run.stack.manage("requeue_dead", "--queue", "faults").stdout.count("requeued ")
    wait_until(
        lambda: len([d for d in starts(run.stack.deliveries()) if d["message_id"] in ids]) > len(tries),
        timeout=60,
        what="requeued messages delivered again",
    )
    # Still poison: after another round of retries they are dead letters again.
    wait_until(lambda: client.zcard("newsrec:faults.XQ") == 3, timeout=120, what="3 messages dead-lettered again")
    worker.stop()
    run.settle(feeds.items)
    outcome = run.count("poison messages (3, always raise)", feeds.items, started)
    outcome.notes.insert(
        0,
        f"{len(tries)} attempts for 3 messages (retries seen {sorted(set(tries))}), "
        f"{dead} dead-lettered with traceback, {requeued} requeued and delivered again",
    )
    outcome.lost += 3 - min(3, requeued)
    # A requeued message starts again at attempt 1: that second start is the requeue, not a redelivery.
    outcome.redelivered = len(redelivered(run.stack.deliveries()) - set(ids))
    feeds.close()
    return outcome


def _redelivery_delay(run: Run, held: set[str], killed: float) -> str:
    again: dict[str, float] = {}
    for d in starts(run.stack.deliveries()):
        if d["message_id"] in held and d["at"] > killed:
            again.setdefault(d["message_id"], d["at"])
    if not held:
        return "n/a"
    if set(again) != held:
        return f"NOT ALL ({len(again)}/{len(held)})"
    return f"{max(again.values()) - killed:.0f} s"


def _run_env() -> dict[str, str]:
    return {
        "SCRAPE_DUE_FEEDS_CRON": "* * * * *",
        "PROCESS_PENDING_CRON": "* * * * *",
        "PROCESSING_BATCH_SIZE": "8",
        "WORKER_MAX_TASKS_PER_CHILD": str(MAX_TASKS_PER_CHILD),
        "NEWSREC_DEMO": "0",
    }


FAULTS: dict[str, Callable[[Run], Outcome]] = {
    "kill-processing": kill_processing_worker,
    "kill-scraping": kill_scraping_worker,
    "redis-restart": restart_redis,
    "postgres-restart": restart_postgres,
    "two-schedulers": two_schedulers,
    "poison": poison_messages,
}


def print_table(outcomes: list[Outcome]) -> None:
    head = f"{'fault':<38} {'sent':>6} {'completed':>9} {'redelivered':>11} {'duplicates':>10} {'lost':>5} {'time':>6}"
    print("\n" + head + "\n" + "-" * len(head))
    for o in outcomes:
        print(
            f"{o.fault:<38} {o.sent:>6} {o.completed:>9} {o.redelivered:>11} {o.duplicates:>10} {o.lost:>5}"
            f" {o.seconds:>5.0f}s"
        )
        for note in o.notes:
            print(f"{'':<4}{note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=6)
    parser.add_argument("--items", type=int, default=50, help="items per feed")
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(FAULTS))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(FAULTS)
    unknown = set(chosen) - set(FAULTS)
    if unknown:
        parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    outcomes: list[Outcome] = []
    with Stack.running(**_run_env()) as stack:
        print(
            f"chaos: private Postgres :{stack.postgres.port}, Redis :{stack.redis.port}, logs in {stack.root}/logs",
            flush=True,
        )
        stack.load_topics()
        token = stack.run_django(
            "from django.contrib.auth import get_user_model\nfrom rest_framework.authtoken.models import Token\n"
            "user = get_user_model().objects.create_superuser('chaos', password='chaos-password-1')\n"
            "result = Token.objects.create(user=user).key\n"
        )
        port = free_port()
        supervisor = stack.supervise(["web", "worker-scraping", "worker-processing", "scheduler"], PORT=str(port))
        base_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(base_url), timeout=120, what="web server")
        run = Run(stack, supervisor, base_url, token, args.feeds, args.items)
        for name in chosen:
            print(f"chaos: {name} ({args.feeds} feeds x {args.items} items)...", flush=True)
            try:
                outcome = FAULTS[name](run)
            except Exception as error:  # noqa: BLE001 - report and go on with the next fault
                outcome = Outcome(name, lost=-1, notes=[f"the run itself failed: {type(error).__name__}: {error}"])
            outcomes.append(outcome)
            print_table([outcome])
    print_table(outcomes)
    bad = [o for o in outcomes if o.duplicates or o.lost]
    print(
        "\nchaos: "
        + ("all duplicates and lost counts are 0" if not bad else "FAILED: " + ", ".join(o.fault for o in bad))
    )
    return 1 if bad else 0


def _answers(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    sys.exit(main())
