"""Actors that only fault tests load (through tests.support.fault_settings): a message that always fails."""

from __future__ import annotations

import os

import dramatiq

from pipeline.actors import NOT_RETRYABLE, RETRY_POLICY

FAULTS = "faults"


@dramatiq.actor(queue_name=FAULTS, time_limit=60_000, max_age=3_600_000, throws=NOT_RETRYABLE, **RETRY_POLICY)
def always_fails(token: str) -> None:
    """A poison message: the same policy as the real actors (3 retries with backoff), and it always raises."""
    raise RuntimeError(f"poison message {token} fails every time")


# What hold_memory keeps: a leak that lasts as long as the worker process.
_held: list[bytearray] = []
PAGE = 4096


@dramatiq.actor(queue_name=FAULTS, time_limit=60_000, max_age=3_600_000, throws=NOT_RETRYABLE, max_retries=0)
def hold_memory(token: str, megabytes: int) -> int:
    """A leak: keep `megabytes` of memory, every page written so it is resident, for the process's life."""
    size = megabytes * 1024 * 1024
    block = bytearray(size)
    block[::PAGE] = b"\x01" * len(range(0, size, PAGE))
    _held.append(block)
    return os.getpid()
