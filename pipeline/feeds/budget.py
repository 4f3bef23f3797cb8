"""Run work on untrusted input under a CPU and a wall-clock budget that can actually stop it.

Parsing and sanitising a hostile document can cost minutes (HTML nested a few hundred thousand
deep, an element with 150,000 attributes), and much of that runs in native code with the GIL
released, where Dramatiq's time limit (an exception raised asynchronously in the worker thread)
cannot land. So the work runs in a child process: the child arms a CPU timer whose signal kills it
(pipeline/feeds/budget_worker.py), and the caller kills it when the wall-clock budget runs out.

Each worker process keeps a small pool of children and reuses them, so a call costs two pipe
round trips, not a fork and the imports; a child that ran over its budget is killed and replaced.
Children are fresh interpreters (not forks of a worker, whose threads may hold locks), import
nothing but the work's own module, and never touch Django's database connection.

    run_with_budget(parse_feed, content, "https://example.org/rss", cpu_seconds=5)

`func` must be a top-level function (or a functools.partial of one) that imports without Django set
up; its arguments and result are pickled across the pipe. Exceptions it raises re-raise here.
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from django.conf import settings

from pipeline.feeds.budget_worker import read_frame, write_frame

__all__ = ["BudgetExceeded", "WorkCrashed", "run_with_budget", "shutdown_pool"]

T = TypeVar("T")

# Used when Django is not configured (plain scripts); with Django, the settings of the same names win.
DEFAULT_CPU_SECONDS = 5.0
DEFAULT_WALL_SECONDS = 30.0
DEFAULT_PROCESSES = 2
DEFAULT_MEMORY_MB = 1024
# A child is replaced after this many calls, so memory it grew on one large input is given back.
CALLS_PER_CHILD = 200

ROOT = Path(__file__).resolve().parents[2]
_CPU_SIGNALS = {signal.SIGPROF, signal.SIGXCPU}


class BudgetExceeded(Exception):
    """The work used up its CPU or wall-clock budget and was stopped; str() says which and how much."""

    def __init__(self, kind: str, budget: float) -> None:
        self.kind = kind  # "cpu" or "wall"
        self.budget = budget  # seconds
        what = "CPU time" if kind == "cpu" else "wall-clock time"
        super().__init__(f"stopped after {budget:g} s of {what} (its budget)")


class WorkCrashed(Exception):
    """The child process died before answering, other than by its budget (a crash in native code)."""


class _RemoteTraceback(Exception):
    def __str__(self) -> str:
        return str(self.args[0])


def run_with_budget(
    func: Callable[..., T],
    /,
    *args: Any,
    cpu_seconds: float | None = None,
    wall_seconds: float | None = None,
) -> T:
    """`func(*args)` in a pooled child process, stopped when it uses `cpu_seconds` of CPU or
    `wall_seconds` in all (defaults: settings FEED_PARSE_CPU_SECONDS and FEED_PARSE_WALL_SECONDS).

    Raises BudgetExceeded when stopped, WorkCrashed when the child died otherwise, and whatever
    `func` raised (with the child's traceback as its cause). MemoryError means the child hit its
    address-space limit (FEED_PARSE_MEMORY_MB).
    """
    cpu = float(cpu_seconds if cpu_seconds is not None else _setting("FEED_PARSE_CPU_SECONDS", DEFAULT_CPU_SECONDS))
    wall = float(
        wall_seconds if wall_seconds is not None else _setting("FEED_PARSE_WALL_SECONDS", DEFAULT_WALL_SECONDS)
    )
    if cpu <= 0 or wall <= 0:
        raise ValueError("budgets must be positive")
    request = pickle.dumps((func, args, cpu), protocol=pickle.HIGHEST_PROTOCOL)
    pool = _pool()
    for attempt in (1, 2):
        child = pool.acquire()
        healthy = False
        try:
            reply = child.call(request, wall)
            healthy = True
            break
        except BrokenPipeError:
            # The child died while idle (killed from outside, say): one fresh child gets the work.
            if attempt == 2:
                raise WorkCrashed("the isolated worker process died before taking the work") from None
        except _Stopped as stopped:
            raise stopped.as_error(cpu, wall) from None
        finally:
            # Anything but a clean answer (also a time limit raised in this thread mid-wait) leaves the
            # child in an unknown state: it is killed rather than handed to the next caller.
            pool.release(child, healthy=healthy)
    return _unpack(reply)


def shutdown_pool() -> None:
    """Stop this process's idle children (also done at exit); busy ones stop when their caller is done."""
    pool = _POOL
    if pool is not None and pool.owner == os.getpid():
        pool.close()


# --- answers -------------------------------------------------------------------------------------


def _unpack(reply: bytes) -> Any:
    try:
        outcome = pickle.loads(reply)
    except Exception as exc:  # noqa: BLE001 - a value whose class cannot be rebuilt here
        raise RuntimeError(f"the isolated work's answer cannot be read: {type(exc).__name__}: {exc}") from None
    kind = outcome[0]
    if kind == "ok":
        return outcome[1]
    if kind == "raise":
        raised, remote_tb = outcome[1], outcome[2]
        raise raised from _RemoteTraceback(f'\n"""\n{remote_tb}"""')
    raise RuntimeError(outcome[1]) from _RemoteTraceback(f'\n"""\n{outcome[2]}"""')


class _Stopped(Exception):
    def __init__(self, reason: str, returncode: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.returncode = returncode

    def as_error(self, cpu: float, wall: float) -> Exception:
        if self.reason == "wall":
            return BudgetExceeded("wall", wall)
        if self.returncode is not None and -self.returncode in _CPU_SIGNALS:
            return BudgetExceeded("cpu", cpu)
        return WorkCrashed(f"the isolated worker process died ({_describe_exit(self.returncode)}) before answering")


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


# --- the children ----------------------------------------------------------------------------------


class _Child:
    def __init__(self, memory_bytes: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.feeds.budget_worker", str(memory_bytes)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            # A session of its own: a terminal's Ctrl-C or a signal to this worker's process group is
            # not the child's business; it ends when its pipe closes (this process exiting).
            start_new_session=True,
        )
        self.calls = 0
        assert self.process.stdin is not None and self.process.stdout is not None
        self._requests = self.process.stdin
        self._replies = self.process.stdout
        write_frame(self._requests, pickle.dumps(list(sys.path)))

    def alive(self) -> bool:
        return self.process.poll() is None

    def call(self, request: bytes, wall_seconds: float) -> bytes:
        self.calls += 1
        deadline = time.monotonic() + wall_seconds
        write_frame(self._requests, request)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise _Stopped("wall", self.process.returncode)
            # Short waits: an exception raised asynchronously in this thread (Dramatiq's time limit)
            # lands between them.
            readable, _, _ = select.select([self._replies], [], [], min(remaining, 1.0))
            if readable:
                break
        reply = read_frame(self._replies)
        if reply is None:
            self.process.wait(timeout=30)
            raise _Stopped("died", self.process.returncode)
        return reply

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self._requests, self._replies):
            try:
                stream.close()
            except OSError:
                pass


class _Pool:
    """Up to `size` children per process; callers beyond that wait for one to come back."""

    def __init__(self, size: int, memory_bytes: int) -> None:
        self.owner = os.getpid()
        self._size = max(1, size)
        self._memory_bytes = memory_bytes
        self._idle: list[_Child] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    def acquire(self) -> _Child:
        with self._cond:
            while True:
                while self._idle:
                    child = self._idle.pop()
                    if child.alive():
                        return child
                    child.kill()  # died while idle (killed from outside, say)
                    self._count -= 1
                if self._count < self._size:
                    break
                self._cond.wait()
            self._count += 1
        try:
            return _Child(self._memory_bytes)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def release(self, child: _Child, *, healthy: bool) -> None:
        keep = healthy and child.alive() and child.calls < CALLS_PER_CHILD
        if not keep:
            child.kill()
        with self._cond:
            if keep and not self._closed:
                self._idle.append(child)
            else:
                if keep:
                    child.kill()
                self._count -= 1
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for child in idle:
            child.kill()


_POOL: _Pool | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Pool:
    global _POOL
    with _POOL_LOCK:
        # A forked process gets a pool of its own: the children belong to the process that started them.
        if _POOL is None or _POOL.owner != os.getpid():
            _POOL = _Pool(
                int(_setting("FEED_PARSE_PROCESSES", DEFAULT_PROCESSES)),
                int(_setting("FEED_PARSE_MEMORY_MB", DEFAULT_MEMORY_MB)) * 1024 * 1024,
            )
        return _POOL


def _setting(name: str, default: float) -> float:
    # Plain scripts (benchmarks, a shell) may use the runner without Django: the defaults apply then.
    if not (settings.configured or os.environ.get("DJANGO_SETTINGS_MODULE")):
        return default
    return float(getattr(settings, name, default))


atexit.register(shutdown_pool)
