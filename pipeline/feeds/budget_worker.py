"""The child side of pipeline.feeds.budget: runs one function call at a time under a CPU limit.

Started by budget.py as `python -m pipeline.feeds.budget_worker` and fed length-prefixed pickles on
stdin; answers on what was stdout. Kept apart from budget.py so that the child imports nothing but
the standard library before the work itself (no Django, so no database connection either).

How the limit holds even while native code runs with the GIL released (nh3, expat): before each
call the child arms ITIMER_PROF, which counts this process's CPU time and whose signal, SIGPROF,
kills the process by default; RLIMIT_CPU a second later is the backstop (SIGXCPU, also fatal). No
Python handler is involved, so nothing waits for the interpreter to get control back.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
from typing import IO, Any

HEADER = struct.Struct("!Q")


def read_frame(stream: IO[bytes]) -> bytes | None:
    """One length-prefixed frame, or None at a clean end of stream."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    payload = _read_exactly(stream, HEADER.unpack(header)[0])
    if payload is None:
        raise EOFError("stream ended inside a frame")
    return payload


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def _read_exactly(stream: IO[bytes], size: int) -> bytes | None:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def cpu_time() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _limit_cpu(seconds: float) -> None:
    # ITIMER_PROF is precise to the scheduler tick; RLIMIT_CPU only takes whole seconds, so it sits a
    # second beyond, in case the timer were ever reset by the work itself.
    signal.setitimer(signal.ITIMER_PROF, seconds)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(cpu_time() + seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _answer(func: Any, args: tuple[Any, ...], cpu_seconds: float) -> bytes:
    started = cpu_time()
    _limit_cpu(cpu_seconds)
    try:
        value = func(*args)
        outcome: tuple[Any, ...] = ("ok", value)
    except MemoryError:
        # No traceback: formatting one needs memory, and the frames holding it are freed only after this.
        outcome = ("raise", MemoryError(), "MemoryError (address-space limit reached)\n")
    except BaseException as exc:  # noqa: BLE001 - every failure of the work goes back to the caller
        outcome = ("raise", exc, traceback.format_exc())
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    used = cpu_time() - started
    try:
        reply = pickle.dumps((*outcome, used), protocol=pickle.HIGHEST_PROTOCOL)
        if outcome[0] == "raise":
            pickle.loads(reply)  # some exceptions pickle but cannot be rebuilt (an __init__ of two arguments)
        return reply
    except Exception as exc:  # noqa: BLE001 - a value or exception that cannot be pickled
        kind = "value" if outcome[0] == "ok" else f"exception {type(outcome[1]).__name__}: {outcome[1]}"
        text = f"the work's {kind} cannot be sent back: {type(exc).__name__}: {exc}"
        tb = outcome[2] if outcome[0] == "raise" else ""
        return pickle.dumps(("unpicklable", text[:2000], tb, used), protocol=pickle.HIGHEST_PROTOCOL)


def serve(memory_bytes: int | None) -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # whatever the work prints goes to stderr, not into replies
    requests = sys.stdin.buffer
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed child leaves no core file behind
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    for number in (signal.SIGPROF, signal.SIGXCPU):
        signal.signal(number, signal.SIG_DFL)
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when this child ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    handshake = read_frame(requests)
    if handshake is None:
        return
    sys.path[:] = pickle.loads(handshake)  # the parent's import path, so its functions import here
    while (frame := read_frame(requests)) is not None:
        try:
            func, args, cpu_seconds = pickle.loads(frame)
        except Exception as exc:  # noqa: BLE001 - e.g. the function's module does not import here
            reply = pickle.dumps(("raise", exc, traceback.format_exc(), 0.0))
        else:
            reply = _answer(func, args, cpu_seconds)
        write_frame(replies, reply)


if __name__ == "__main__":
    serve(int(sys.argv[1]) if len(sys.argv) > 1 else None)
