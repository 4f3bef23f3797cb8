"""The time-budget runner (pipeline/feeds/budget.py): work in a pooled child process, stopped by its
CPU or wall-clock budget even inside native code that has released the GIL."""

from __future__ import annotations

import functools
import os
import signal
import threading
from pathlib import Path

import pytest

from pipeline.feeds import budget
from pipeline.feeds.budget import BudgetExceeded, WorkCrashed, run_with_budget
from tests.support import budget_work
from tests.support.faults import wait_until


@pytest.fixture(autouse=True)
def fresh_pool():
    budget.shutdown_pool()
    budget._POOL = None
    yield
    budget.shutdown_pool()
    budget._POOL = None


def test_returns_the_value_and_runs_in_another_process():
    assert run_with_budget(budget_work.add, 2, 3) == 5
    assert run_with_budget(budget_work.pid) != os.getpid()
    assert run_with_budget(functools.partial(budget_work.add, 10), 5) == 15


def test_children_are_reused_not_started_per_call():
    pids = {run_with_budget(budget_work.pid) for _ in range(5)}
    assert len(pids) == 1


def test_the_child_does_not_carry_django():
    # A fresh interpreter, not a fork of this Django process: no settings, no database connection.
    assert run_with_budget(budget_work.django_loaded) is False


def test_exceptions_re_raise_in_the_caller_with_the_childs_traceback():
    with pytest.raises(LookupError, match="no such thing") as raised:
        run_with_budget(budget_work.fail, "no such thing")
    assert "budget_work.py" in str(raised.value.__cause__)
    assert run_with_budget(budget_work.add, 1, 1) == 2  # the child survives an exception


def test_an_exception_that_cannot_be_pickled_still_reports_itself():
    with pytest.raises(RuntimeError, match="Unpicklable: two parts"):
        run_with_budget(budget_work.fail_unpicklably)


def test_output_printed_by_the_work_does_not_corrupt_the_reply():
    assert run_with_budget(budget_work.print_then_return, "clean") == "clean"


def test_pure_python_work_is_stopped_by_its_cpu_budget():
    with pytest.raises(BudgetExceeded) as raised:
        run_with_budget(budget_work.spin, 60, cpu_seconds=0.5, wall_seconds=120)
    assert raised.value.kind == "cpu" and raised.value.budget == 0.5
    assert str(raised.value) == "stopped after 0.5 s of CPU time (its budget)"


def test_native_code_that_released_the_gil_is_stopped_too():
    # nh3 on HTML nested 300,000 deep runs for minutes in Rust with the GIL released.
    with pytest.raises(BudgetExceeded) as raised:
        run_with_budget(budget_work.nested_html, 300_000, cpu_seconds=1, wall_seconds=120)
    assert raised.value.kind == "cpu"


def test_work_that_waits_is_stopped_by_its_wall_clock_budget():
    with pytest.raises(BudgetExceeded) as raised:
        run_with_budget(budget_work.sleep, 60, cpu_seconds=5, wall_seconds=0.5)
    assert raised.value.kind == "wall"
    assert "wall-clock" in str(raised.value)


def test_a_stopped_child_is_replaced_and_the_next_call_works():
    first = run_with_budget(budget_work.pid)
    with pytest.raises(BudgetExceeded):
        run_with_budget(budget_work.spin, 60, cpu_seconds=0.3)
    assert run_with_budget(budget_work.add, 20, 22) == 42
    assert run_with_budget(budget_work.pid) != first


def test_a_child_killed_while_idle_is_replaced_transparently():
    victim = run_with_budget(budget_work.pid)
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: _is_zombie(victim), timeout=30, what="the killed child to exit")
    assert run_with_budget(budget_work.add, 1, 2) == 3


def _is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def test_a_crash_is_not_mistaken_for_a_budget():
    with pytest.raises(WorkCrashed, match="SIGKILL"):
        run_with_budget(budget_work.die, signal.SIGKILL)


def test_memory_beyond_the_cap_is_a_memory_error(settings):
    settings.FEED_PARSE_MEMORY_MB = 200
    with pytest.raises(MemoryError):
        run_with_budget(budget_work.allocate, 400)
    assert run_with_budget(budget_work.allocate, 10) == 10 * 1024 * 1024


def test_defaults_come_from_settings(settings):
    settings.FEED_PARSE_CPU_SECONDS = 0.3
    with pytest.raises(BudgetExceeded) as raised:
        run_with_budget(budget_work.spin, 60)
    assert raised.value.budget == 0.3


def test_an_ordinary_call_completes_while_another_thread_runs_hostile_work():
    outcomes: dict[str, object] = {}

    def hostile() -> None:
        try:
            run_with_budget(budget_work.nested_html, 300_000, cpu_seconds=2)
        except BudgetExceeded as exc:
            outcomes["hostile"] = exc.kind

    thread = threading.Thread(target=hostile)
    thread.start()
    outcomes["ordinary"] = [run_with_budget(budget_work.add, i, i) for i in range(20)]
    thread.join(timeout=120)
    assert outcomes == {"hostile": "cpu", "ordinary": [2 * i for i in range(20)]}


def test_callers_beyond_the_pool_size_wait_for_a_child(settings):
    settings.FEED_PARSE_PROCESSES = 1
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(run_with_budget(budget_work.pid))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 4 and len(set(results)) == 1
