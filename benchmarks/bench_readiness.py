"""How soon /readyz says 503: after a queue's only worker is killed (SIGKILL, so its heartbeat key stays
until it expires) or stopped cleanly (it deletes the key; the reference), and after Redis stops.

A private stack (tests/support/faults.py): gunicorn, a worker per queue, the scheduler, its own Postgres
and Redis. Each round waits for 200, causes the fault, and polls /readyz every 0.1 s until 503.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
import urllib.error
import urllib.request

from benchmarks import scale

# Quick: one round of each fault (the private stack's start-up is most of the time either way), and a
# killed worker counts as gone after 7 s instead of 12: the wait for that is what the bench measures,
# and in a smoke test it need not be the default's.
ROUNDS = 1 if scale.QUICK else 3
STALE_SECONDS = 7 if scale.QUICK else None  # None: the setting's default


def _status(base: str) -> int:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=20) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run() -> dict:
    from tests.support.faults import Stack, wait_until

    def until_503(base: str, started: float) -> float:
        wait_until(lambda: _status(base) == 503, timeout=60, interval=0.1, what="503")
        return time.monotonic() - started

    from django.conf import settings

    stale = STALE_SECONDS or settings.READYZ_WORKER_STALE_SECONDS
    killed, stopped, redis_down = [], [], []
    with Stack.running(READYZ_QUEUES="scraping,processing", READYZ_WORKER_STALE_SECONDS=str(stale)) as stack:
        stack.start_worker("processing")
        stack.start_scheduler()
        _, base = stack.start_web()
        for kill in [True] * ROUNDS + [False] * ROUNDS:
            worker = stack.start_worker("scraping")
            wait_until(lambda: _status(base) == 200, timeout=120, what="ready")
            time.sleep(2)  # a beat or so after the last one, as a crash would come
            started = time.monotonic()
            if kill:
                os.killpg(worker.pid, signal.SIGKILL)
                killed.append(until_503(base, started))
            else:
                # SIGTERM to the main process only, as `docker stop` sends it: Dramatiq stops its worker
                # process gracefully, which deletes the heartbeat key.
                os.kill(worker.pid, signal.SIGTERM)
                stopped.append(until_503(base, started))
        stack.start_worker("scraping")
        for _ in range(ROUNDS):
            wait_until(lambda: _status(base) == 200, timeout=120, what="ready")
            started = time.monotonic()
            stack.redis.stop()
            redis_down.append(until_503(base, started))
            stack.redis.start()

    def row(name: str, values: list[float]) -> list[object]:
        return [name, f"{statistics.median(values):.2f}", f"{min(values):.2f}–{max(values):.2f}", len(values)]

    return {
        "title": "Readiness: seconds until /readyz answers 503",
        "figures": {
            "worker_sigkill_median_s": round(statistics.median(killed), 2),
            "worker_clean_stop_median_s": round(statistics.median(stopped), 2),
            "redis_stop_median_s": round(statistics.median(redis_down), 3),
        },
        "table": [
            ["fault", "median s", "spread", "rounds"],
            row("the queue's only worker SIGKILLed", killed),
            row("the queue's only worker stopped cleanly (reference)", stopped),
            row("Redis stopped", redis_down),
        ],
        "notes": "A killed worker counts as gone once its last heartbeat (every 5 s) is READYZ_WORKER_STALE_SECONDS "
        f"({stale}) old, so between {stale - 5} and {stale} s after the kill; a clean stop deletes the heartbeat as "
        "it shuts down.",
    }
