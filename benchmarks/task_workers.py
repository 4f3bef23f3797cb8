"""The no-op actor of `make bench BENCH=tasks`, for both set-ups its worker processes run.

NEWSREC_BENCH_TASKS_MODE=bare: a plain RedisBroker with Dramatiq's default middleware and nothing of
the project's. =project: the project's broker exactly as settings configure it (task records,
heartbeats, results, DB connections...). `dramatiq benchmarks.task_workers` reads `broker` from here.
"""

from __future__ import annotations

import os

import dramatiq

MODE = os.environ.get("NEWSREC_BENCH_TASKS_MODE", "project")
QUEUE = "bench-tasks"

if MODE == "bare":
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=os.environ["REDIS_URL"], namespace=os.environ["NEWSREC_BENCH_BARE_NAMESPACE"])
    dramatiq.set_broker(broker)
else:
    import django

    django.setup()
    broker = dramatiq.get_broker()
    _strip = os.environ.get("NEWSREC_BENCH_STRIP_MIDDLEWARE")  # experiments only
    if _strip:
        broker.middleware[:] = [m for m in broker.middleware if type(m).__name__ not in _strip.split(",")]


def noop(i: int) -> None:
    return None


noop_actor = dramatiq.actor(noop, actor_name="noop", queue_name=QUEUE, max_retries=0, broker=broker)
