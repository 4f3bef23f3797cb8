"""Worker middleware for fault tests: logs each start and end of a message's processing to Redis.

With it a test sees redeliveries (the same message and attempt started twice, e.g. after its worker
was killed) apart from retries, and which messages a worker had in hand when it died. Only the
processes that fault tests start load it (tests.support.fault_settings).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from tests.support.faults import DELIVERY_LOG_KEY

logger = logging.getLogger(__name__)


class DeliveryLog(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: dramatiq.Message) -> None:
        self._log(broker, message, "start")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: dramatiq.Message,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._log(broker, message, "done", error=type(exception).__name__ if exception else None)

    def _log(self, broker: dramatiq.Broker, message: dramatiq.Message, event: str, **extra: Any) -> None:
        entry = {
            "event": event,
            "message_id": message.message_id,
            "redis_message_id": message.options.get("redis_message_id"),
            "actor": message.actor_name,
            "queue": message.queue_name,
            "retries": message.options.get("retries", 0),
            "pid": os.getpid(),
            "at": time.time(),
            **extra,
        }
        try:
            broker.client.rpush(DELIVERY_LOG_KEY, json.dumps(entry))  # type: ignore[attr-defined]
        except Exception:  # noqa: BLE001 - the log is an observer: it must not change what it observes
            logger.warning("could not log %s of %s", event, message.message_id, exc_info=True)
