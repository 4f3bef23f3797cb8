"""Functions tests run through pipeline.feeds.budget: top-level, importable in a child without Django."""

from __future__ import annotations

import os
import sys
import time

import nh3


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def django_loaded() -> bool:
    return "django.db" in sys.modules or "django.conf" in sys.modules


def spin(seconds: float) -> int:
    """Pure Python CPU work (holds the GIL) for about `seconds` of CPU time."""
    end = time.process_time() + seconds
    count = 0
    while time.process_time() < end:
        count += 1
    return count


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def nested_html(depth: int) -> int:
    """nh3 on HTML nested `depth` deep: native code, GIL released, cost quadratic in the depth."""
    return len(nh3.clean("<div>" * depth + "x"))


def fail(message: str) -> None:
    raise LookupError(message)


class Unpicklable(Exception):
    def __init__(self, a: str, b: str) -> None:  # pickling calls Unpicklable(message) and fails
        super().__init__(f"{a} {b}")


def fail_unpicklably() -> None:
    raise Unpicklable("two", "parts")


def die(signal_number: int) -> None:
    os.kill(os.getpid(), signal_number)
    time.sleep(10)


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes * 1024 * 1024))


def print_then_return(value: str) -> str:
    print("noise on stdout must not corrupt the reply")  # noqa: T201
    return value
