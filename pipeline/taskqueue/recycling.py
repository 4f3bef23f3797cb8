"""Restart a worker's processes after a set number of messages: Celery's `worker_max_tasks_per_child`.

Model inference leaks memory slowly (allocator fragmentation, caches that only grow), so a long-lived
processing worker should start afresh now and then. Dramatiq 2.2 has no such option; this middleware
adds it by asking Dramatiq's own main process for the restart it already knows how to do:

- After the worker process has acknowledged `WORKER_MAX_TASKS_PER_CHILD` messages taken from the
  queues in `WORKER_RECYCLE_QUEUES`, it sends SIGHUP to its parent, Dramatiq's main process.
- The main process treats SIGHUP as "reload" (dramatiq/cli.py): it passes SIGHUP on to every worker
  process, which stops gracefully — worker threads finish the message in hand, consumers keep
  heart-beating meanwhile, prefetched but unstarted messages go back on the queue — and, once all
  of them have exited, re-executes itself with the same command line and environment.

Nothing is dropped and no supervisor is involved (the main process keeps its pid, so supervisord and
docker see nothing). Counting happens after the acknowledgement, so the message that reached the
limit is already done. With `-p N` all N processes restart together; processing runs with `-p 1`.
Why not just exit the worker process? Dramatiq's main process answers an exiting child by shutting
the whole worker down (logged as critical) and relies on a supervisor to start it again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import dramatiq
from django.conf import settings
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.worker import WorkerThread

logger = logging.getLogger(__name__)


class WorkerRecycling(Middleware):
    def __init__(self, max_tasks: int | None = None, queues: list[str] | None = None) -> None:
        self.max_tasks = settings.WORKER_MAX_TASKS_PER_CHILD if max_tasks is None else max_tasks
        # Exact queue names: a delayed message moved off "processing.DQ" is acked there too, but it is
        # not a task done (it runs later, from "processing", and counts then).
        self.queues = set(settings.WORKER_RECYCLE_QUEUES if queues is None else queues)
        self.handled = 0
        self.parent_pid: int | None = None
        self.requested = False
        self.lock = threading.Lock()

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        # Only Dramatiq's worker processes emit process_boot, so in-process workers (tests, shells)
        # never signal anybody. The parent is Dramatiq's main process.
        if self.max_tasks > 0:
            self.parent_pid = os.getppid()

    def after_ack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._count(message)

    def after_nack(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._count(message)

    def _count(self, message: MessageProxy) -> None:
        if self.parent_pid is None or message.queue_name not in self.queues:
            return
        with self.lock:
            self.handled += 1
            if self.handled < self.max_tasks or self.requested:
                return
            self.requested = True
        if os.getppid() != self.parent_pid:
            # Orphaned (the main process died): signalling our new parent could be init. Stop alone.
            logger.warning("worker recycling: main process %s is gone; stopping this process", self.parent_pid)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        logger.info(
            "worker recycling: %d messages handled (limit %d); asking the main process %d to restart the workers",
            self.handled,
            self.max_tasks,
            self.parent_pid,
        )
        current = threading.current_thread()
        if isinstance(current, WorkerThread):
            # This thread takes no further message; what was prefetched goes back on the queue at shutdown.
            current.stop()
        os.kill(self.parent_pid, signal.SIGHUP)
