"""An actor that logs, for tests/test_json_logs.py's worker subprocess (loaded by module name)."""

from __future__ import annotations

import logging

import django

django.setup()

import dramatiq  # noqa: E402

QUEUE = "logs-test"
broker = dramatiq.get_broker()
logger = logging.getLogger("newsrec.test.logs")


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=60_000)
def says_hello(name: str) -> None:
    logger.info("hello %s", name)
