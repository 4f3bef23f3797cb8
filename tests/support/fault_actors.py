"""Actors that only fault tests load (through tests.support.fault_settings): a message that always fails."""

from __future__ import annotations

import dramatiq

from pipeline.actors import NOT_RETRYABLE, RETRY_POLICY

FAULTS = "faults"


@dramatiq.actor(queue_name=FAULTS, time_limit=60_000, max_age=3_600_000, throws=NOT_RETRYABLE, **RETRY_POLICY)
def always_fails(token: str) -> None:
    """A poison message: the same policy as the real actors (3 retries with backoff), and it always raises."""
    raise RuntimeError(f"poison message {token} fails every time")
