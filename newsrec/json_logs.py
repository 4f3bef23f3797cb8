"""LOG_FORMAT=json: one JSON object per log line, with the task id, actor and queue on every line a worker
writes while it runs a task (collectors such as Loki, Elasticsearch or CloudWatch parse it as is).

The task comes from Dramatiq's CurrentMessage middleware (in DRAMATIQ_BROKER's list), which keeps the
message each worker thread is running; the filter sits on the handler, so it also tags lines of
libraries' loggers that propagate to it.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from dramatiq.middleware import CurrentMessage

TASK_FIELDS = ("task_id", "actor", "queue")


class TaskContext(logging.Filter):
    """Adds task_id, actor and queue to records logged while a worker thread runs a message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = CurrentMessage.get_current_message()
        if message is not None:
            record.task_id = message.message_id
            record.actor = message.actor_name
            record.queue = message.queue_name
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for name in TASK_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
