"""The private stack of the Sentinel failover test (tests/test_sentinel_failover.py) and what it reads
from it: Postgres as tests.support.faults makes it, a Sentinel group instead of one Redis, the delivery
log and leftovers read from whichever server is master now, and a client that keeps asking the web
process to queue work through a failover."""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from tests.support.faults import AUDIT_SQL, DELIVERY_LOG_KEY, PrivatePostgres, Stack
from tests.support.sentinels import SentinelGroup, sentinel_group

NAMESPACE = "newsrec"  # the private stack's (Stack.env sets NEWSREC_TEST_NAMESPACE)


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


def leftover_message_ids(client: redis.Redis) -> set[str]:
    """Message ids whose bodies are still in a queue's hash (dead letters aside)."""
    return {
        json.loads(data)["message_id"]
        for key in client.scan_iter(f"{NAMESPACE}:*.msgs")
        if b".XQ." not in key
        for data in client.hvals(key)
    }


def leftover_report(stack: Stack, client: redis.Redis) -> str:
    """What is left in the new master's queues, for a failure message: each message's redis id, whether
    it is on its queue's list, its task record's status, and the workers' connection warnings."""
    lines = []
    for key in client.scan_iter(f"{NAMESPACE}:*.msgs"):
        queue = key.decode()[: -len(".msgs")]
        listed = {item.decode() for item in client.lrange(queue, 0, -1)}
        for redis_id, data in client.hgetall(key).items():
            message_id = json.loads(data)["message_id"]
            status = stack.scalar("SELECT status FROM pipeline_taskrecord WHERE message_id = %s", [message_id])
            lines.append(f"{queue} {redis_id.decode()} listed={redis_id.decode() in listed} record={status}")
    for process in stack.processes:
        noted = [line for line in process.output().splitlines() if "WARNING" in line or "CRITICAL" in line]
        lines += [f"{process.name}: {line[:240]}" for line in noted[-15:]]
    return "\n".join(lines)


def api_token(stack: Stack) -> str:
    return stack.run_django(
        "from django.contrib.auth import get_user_model\n"
        "from rest_framework.authtoken.models import Token\n"
        "user = get_user_model().objects.create_superuser('failover', password='x')\n"
        "result = Token.objects.get_or_create(user=user)[0].key\n"
    )


class PostUntilAccepted(threading.Thread):
    """Asks the web process to scrape a feed every quarter second from the fault on, until one answers
    202: how long enqueueing through the API fails, and how (503 while there is no master)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.url, self.headers = url, headers
        self.answers: list[tuple[float, int]] = []

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                status = httpx.post(self.url, headers=self.headers, timeout=60).status_code
            except httpx.HTTPError:
                status = 0
            self.answers.append((time.time(), status))
            if status == 202:
                return
            time.sleep(0.25)
