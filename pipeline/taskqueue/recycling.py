"""Restart a worker's processes when one has grown too big (Celery's `worker_max_memory_per_child`),
or, as an option, after a set number of messages (Celery's `worker_max_tasks_per_child`).

Model inference leaks memory slowly (allocator fragmentation, caches that only grow), so a long-lived
processing worker should start afresh now and then. A restart costs a processing worker 8–44 s on a
2-core machine, depending on the machine and its load (stop, re-exec, Django and model load; `make bench
BENCH=recycling`): restarting every N messages pays that whether memory grew or not (a restart every 50
batches would cost 7–17 % of processing time on full-length news, BENCHMARKS.md), so by default a process is
recycled only when its resident memory passes `WORKER_MAX_MEMORY_PER_CHILD_MB`, which a process whose
memory stays flat never does. `WORKER_MAX_TASKS_PER_CHILD` (off by default) adds the message count.

Dramatiq 2.2 has neither option; this middleware adds them by asking Dramatiq's own main process for the
restart it already knows how to do:

- After acknowledging a message taken from the queues in `WORKER_RECYCLE_QUEUES`, the worker process
  checks its limits; over one, it sends SIGHUP to its parent, Dramatiq's main process.
- The main process treats SIGHUP as "reload" (dramatiq/cli.py): it passes SIGHUP on to every worker
  process, which stops gracefully — worker threads finish the message in hand, consumers keep
  heart-beating meanwhile, prefetched but unstarted messages go back on the queue — and, once all
  of them have exited, re-executes itself with the same command line and environment.

Nothing is dropped and no supervisor is involved (the main process keeps its pid, so supervisord and
docker see nothing). Checking happens after the acknowledgement, so the message that crossed the limit
is already done. With `-p N` all N processes restart together; processing runs with `-p 1`.
Why not just exit the worker process? Dramatiq's main process answers an exiting child by shutting
the whole worker down (logged as critical) and relies on a supervisor to start it again.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import sys
import threading

import dramatiq
from django.conf import settings
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.worker import WorkerThread

logger = logging.getLogger(__name__)

MB = 1024 * 1024


def resident_memory_mb() -> float:
    """This process's resident memory now (Linux: /proc/self/statm); elsewhere its peak, which only grows."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / MB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def recycle_reason(
    *, handled: int, max_tasks: int, rss_mb: float, first_rss_mb: float, max_memory_mb: int
) -> str | None:
    """Why this process should restart now, or None.

    The memory ceiling is not applied when the process was already over it after its first message
    (`first_rss_mb`): its working set (the model, a vector index grown with the corpus) is bigger than
    the ceiling, and restarting after every message would only pay the restart again and again.
    """
    if max_tasks > 0 and handled >= max_tasks:
        return f"{handled} messages handled (limit {max_tasks})"
    if max_memory_mb > 0 and rss_mb > max_memory_mb and first_rss_mb <= max_memory_mb:
        return f"resident memory {rss_mb:.0f} MB over the {max_memory_mb} MB ceiling after {handled} messages"
    return None


class WorkerRecycling(Middleware):
    def __init__(
        self, max_tasks: int | None = None, queues: list[str] | None = None, max_memory_mb: int | None = None
    ) -> None:
        self.max_tasks = settings.WORKER_MAX_TASKS_PER_CHILD if max_tasks is None else max_tasks
        self.max_memory_mb = settings.WORKER_MAX_MEMORY_PER_CHILD_MB if max_memory_mb is None else max_memory_mb
        # Exact queue names: a delayed message moved off "processing.DQ" is acked there too, but it is
        # not a task done (it runs later, from "processing", and counts then).
        self.queues = set(settings.WORKER_RECYCLE_QUEUES if queues is None else queues)
        self.handled = 0
        self.first_rss_mb: float | None = None
        self.parent_pid: int | None = None
        self.requested = False
        self.lock = threading.Lock()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only Dramatiq's worker processes emit process_boot, so in-process workers (tests, shells)
        # never signal anybody. The parent is Dramatiq's main process.
        if self.max_tasks > 0 or self.max_memory_mb > 0:
            self.parent_pid = os.getppid()

    def after_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._count(message)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._count(message)

    def _count(self, message: MessageProxy) -> None:
        if self.parent_pid is None or message.queue_name not in self.queues:
            return
        rss = resident_memory_mb()  # one small read of /proc per message
        with self.lock:
            self.handled += 1
            if self.first_rss_mb is None:
                self.first_rss_mb = rss
                if self.max_memory_mb > 0 and rss > self.max_memory_mb:
                    logger.error(
                        "worker recycling: %.0f MB resident after the first message, over the %d MB ceiling: "
                        "not recycling on memory (a fresh process would be as big); raise "
                        "WORKER_MAX_MEMORY_PER_CHILD_MB",
                        rss,
                        self.max_memory_mb,
                    )
            if self.requested:
                return
            reason = recycle_reason(
                handled=self.handled,
                max_tasks=self.max_tasks,
                rss_mb=rss,
                first_rss_mb=self.first_rss_mb,
                max_memory_mb=self.max_memory_mb,
            )
            if reason is None:
                return
            self.requested = True
        if os.getppid() != self.parent_pid:
            # Orphaned (the main process died): signalling our new parent could be init. Stop alone.
            logger.warning("worker recycling: main process %s is gone; stopping this process", self.parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        logger.info("worker recycling: %s; asking the main process %d to restart the workers", reason, self.parent_pid)
        current = threading.current_thread()
        if isinstance(current, WorkerThread):
            # This thread takes no further message; what was prefetched goes back on the queue at shutdown.
            current.stop()
        os.kill(self.parent_pid, signal.SIGHUP)
