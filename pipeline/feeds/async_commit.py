"""Transactions for a poll's bookkeeping, whose commit does not wait for the disk.

A feed answered 304 (or failed) costs its worker two small writes, the feed's poll state and the
poll log, and a synchronous commit waits for the WAL flush, which made those waits most of a 304
pass (BENCHMARKS.md, "Scraping"). These writes may be committed asynchronously: a crash of a worker
or web process loses nothing Postgres acknowledged, and a crash of Postgres itself (or its machine)
loses at most the last ~0.6 s of them (3 × wal_writer_delay), which costs a feed one early re-poll
and the log one line. New articles are never written this way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def async_commit() -> Iterator[None]:
    """An atomic block committed without waiting for the flush, unless it is nested in a caller's
    transaction (a test's, an outer atomic block): that transaction's commit decides durability."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
