"""Worker recycling: a worker process over its resident-memory ceiling is replaced by a fresh one, with
no message lost or run twice (real worker processes on a private Postgres and Redis); a process whose
working set is over the ceiling from the start is not restarted after every message."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from pipeline.taskqueue.recycling import recycle_reason, resident_memory_mb
from tests.support.faults import Stack, redelivered, starts, wait_until

LEAK_MB = 100
MESSAGES = 8


def test_the_message_count_and_the_memory_ceiling_each_ask_for_a_restart():
    assert recycle_reason(handled=5, max_tasks=0, rss_mb=900, first_rss_mb=600, max_memory_mb=1000) is None
    assert "1100 MB over the 1000 MB" in recycle_reason(
        handled=5, max_tasks=0, rss_mb=1100, first_rss_mb=600, max_memory_mb=1000
    )
    assert "50 messages" in recycle_reason(handled=50, max_tasks=50, rss_mb=100, first_rss_mb=100, max_memory_mb=1000)
    # Off: 0 for either limit.
    assert recycle_reason(handled=10**6, max_tasks=0, rss_mb=10**6, first_rss_mb=1, max_memory_mb=0) is None
    # Over the ceiling from its first message: a fresh process would be as big, so no restart loop.
    assert recycle_reason(handled=7, max_tasks=0, rss_mb=1500, first_rss_mb=1200, max_memory_mb=1000) is None


def test_resident_memory_follows_what_this_process_writes():
    before = resident_memory_mb()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    assert resident_memory_mb() - before > 48
    del block


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.running() as stack:
        yield stack


@pytest.fixture
def fresh(stack: Stack) -> Iterator[Stack]:
    stack.reset()
    yield stack
    stack.stop_all()
    stack.processes.clear()


def _idle_worker_process_mb(stack: Stack) -> float:
    """Resident memory of a Django process that imported what a worker imports (the actors)."""
    return stack.run_django(
        "import pipeline.actors, tests.support.fault_actors\n"
        "from pipeline.taskqueue.recycling import resident_memory_mb\n"
        "result = resident_memory_mb()\n"
    )


def _send_leaks(stack: Stack) -> list[str]:
    return stack.run_django(
        "from tests.support.fault_actors import hold_memory\n"
        f"result = [hold_memory.send(f'leak-{{n}}', {LEAK_MB}).message_id for n in range({MESSAGES})]\n"
    )


def _finished(stack: Stack) -> Counter[str]:
    return Counter(d["message_id"] for d in stack.deliveries() if d["event"] == "done" and not d.get("error"))


@pytest.mark.e2e
def test_a_worker_over_its_memory_ceiling_is_replaced_and_loses_no_message(fresh: Stack):
    # Room for the worker's own overhead and one leak, not for three: every few messages a restart.
    ceiling = int(_idle_worker_process_mb(fresh)) + 2 * LEAK_MB + LEAK_MB // 2
    worker = fresh.start_worker("faults", WORKER_RECYCLE_QUEUES="faults", WORKER_MAX_MEMORY_PER_CHILD_MB=str(ceiling))
    main_pid = worker.pid
    sent = _send_leaks(fresh)
    wait_until(lambda: len(_finished(fresh)) == MESSAGES, timeout=240, what="every leak message finished")

    finished = _finished(fresh)
    deliveries = fresh.deliveries()
    assert set(finished) == set(sent) and set(finished.values()) == {1}, finished
    assert not redelivered(deliveries)
    per_process = Counter(d["pid"] for d in starts(deliveries))
    # Each process took a few messages, crossed the ceiling and was replaced; the main process stayed.
    assert len(per_process) >= 2 and max(per_process.values()) < MESSAGES, per_process
    assert worker.alive() and worker.pid == main_pid
    assert f"over the {ceiling} MB ceiling" in worker.output()


@pytest.mark.e2e
def test_a_worker_over_its_ceiling_from_the_start_is_not_restarted_after_every_message(fresh: Stack):
    worker = fresh.start_worker("faults", WORKER_RECYCLE_QUEUES="faults", WORKER_MAX_MEMORY_PER_CHILD_MB="50")
    sent = _send_leaks(fresh)
    wait_until(lambda: len(_finished(fresh)) == MESSAGES, timeout=240, what="every leak message finished")

    assert set(_finished(fresh)) == set(sent)
    assert len({d["pid"] for d in starts(fresh.deliveries())}) == 1
    assert "not recycling on memory" in worker.output()
