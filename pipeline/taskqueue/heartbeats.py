"""Live-worker heartbeats in Redis: one key per worker process, with what each of its threads is running.

Each worker process rewrites its key every few seconds with a TTL a few times longer, so a worker that
dies (even by SIGKILL) drops off the queues page within `HEARTBEAT_TTL_SECONDS`; a task record still
"running" on a worker without a heartbeat is flagged there as stuck. The same thread asks for queue
maintenance on a clock (pipeline.taskqueue.maintenance), so a dead worker's messages come back in time.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from pipeline.taskqueue import redis_keys
from pipeline.taskqueue.broker import redis_broker, redis_client
from pipeline.taskqueue.maintenance import MAINTENANCE_EVERY_SECONDS, force_maintenance
from pipeline.taskqueue.rows import worker_name

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_SECONDS = 5.0
HEARTBEAT_TTL_SECONDS = 20


@dataclass
class LiveWorker:
    name: str
    queues: list[str]
    threads: int
    started_at: float
    beat_at: float
    processed: int
    running: list[dict[str, Any]] = field(default_factory=list)


def live_workers(broker: dramatiq.Broker) -> list[LiveWorker]:
    """Every worker process whose heartbeat has not expired, by name."""
    client = redis_client(broker)
    keys = sorted(client.scan_iter(match=redis_keys.worker_heartbeat_pattern(), count=500))
    workers = []
    for raw in client.mget(keys) if keys else []:
        if raw is None:
            continue  # expired between SCAN and MGET
        try:
            data = json.loads(raw)
            workers.append(LiveWorker(**data))
        except (ValueError, TypeError):
            logger.warning("ignoring a malformed worker heartbeat: %r", raw[:200])
    return sorted(workers, key=lambda w: w.name)


class WorkerHeartbeatMiddleware(Middleware):
    """Tracks the messages this process is running and publishes them with a heartbeat."""

    def __init__(self) -> None:
        self._running: dict[str, dict[str, Any]] = {}
        self._processed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if not hasattr(broker, "client"):
            return  # not the Redis broker
        self._stop.clear()
        self._queues = sorted(q for q in worker.consumers if not q.endswith(".DQ"))
        self._threads = worker.worker_threads
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._beat, args=(broker,), name="worker-heartbeat", daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
            try:
                redis_client(broker).delete(redis_keys.worker_heartbeat(worker_name()))
            except Exception:  # noqa: BLE001 - the key expires anyway
                logger.debug("could not delete the heartbeat key", exc_info=True)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._running[message.message_id] = {
            "message_id": message.message_id,
            "actor_name": message.actor_name,
            "queue_name": message.queue_name,
            "started_at": time.time(),
            "thread": threading.current_thread().name,
        }

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        self._running.pop(message.message_id, None)
        self._processed += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._running.pop(message.message_id, None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": worker_name(),
            "queues": self._queues,
            "threads": self._threads,
            "started_at": self._started_at,
            "beat_at": time.time(),
            "processed": self._processed,
            "running": list(self._running.values()),
        }

    def _beat(self, broker: dramatiq.Broker) -> None:
        key = redis_keys.worker_heartbeat(worker_name())
        last_maintenance = time.monotonic()
        while True:
            try:
                redis_client(broker).set(key, json.dumps(self.snapshot()), ex=HEARTBEAT_TTL_SECONDS)
                if time.monotonic() - last_maintenance >= MAINTENANCE_EVERY_SECONDS:
                    last_maintenance = time.monotonic()
                    for queue in self._queues:
                        force_maintenance(redis_broker(broker), queue)
            except Exception:  # noqa: BLE001 - Redis down: the broker itself will say so
                logger.debug("heartbeat failed", exc_info=True)
            if self._stop.wait(HEARTBEAT_INTERVAL_SECONDS):
                return
