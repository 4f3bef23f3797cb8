"""Where a scraping worker's time goes, read from a py-spy profile (`py-spy record --idle --format raw`).

py-spy samples every thread of the worker's processes at a fixed rate, idle or not (--idle): attached
to Dramatiq's main process with --subprocesses, it samples each worker process and the parse children
they run feeds through. Each raw line is one distinct stack, outermost frame
first, and how many samples had it. A worker thread's sample counts for one of the shares below by the
first rule its stack matches, so a share is the part of the worker threads' wall-clock time spent there;
a thread with no message in hand is idle (waiting for the next one).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

# (share, markers): the first share whose marker appears in a stack takes the sample. Order matters:
# a database query made while fetching would be the fetch's (none is), a task record written by the
# middleware while the actor's function has returned is the middleware's.
SHARES: list[tuple[str, tuple[str, ...]]] = [
    ("waiting for the batch's polls (fetch and parse run in poll threads)", ("as_completed (",)),
    ("network (fetch: connect, request, wait, read)", ("fetch_feed (pipeline/feeds/fetching.py",)),
    ("feed parsing (waiting for the parse child)", ("run_with_budget (pipeline/feeds/budget.py",)),
    ("database writes: articles and feed state", ("upsert_entries (", "(pipeline/feeds/scraping.py")),
    ("database: poll log (FeedFetch)", ("record_fetches (",)),
    ("chain: claim articles, queue processing", ("enqueue_processing (", "queue_page_fetches (")),
    ("task records and other middleware", ("(pipeline/taskqueue/",)),
    ("Dramatiq (receive, ack, results)", ("(dramatiq/",)),
]
IDLE = "idle (no message in hand)"
# A batch's poll threads (scraping.scrape_feeds): what a poll waits for, by the same rule.
POLL_SHARES: list[tuple[str, tuple[str, ...]]] = [
    ("network (fetch: connect, request, wait, read)", ("fetch_feed (pipeline/feeds/fetching.py",)),
    ("feed parsing (waiting for the parse child)", ("run_with_budget (pipeline/feeds/budget.py",)),
]
_POLL = "_poll (pipeline/feeds/scraping.py"
# What a parse child spends its CPU on, by the same first-match rule over its stacks.
CHILD_SHARES: list[tuple[str, tuple[str, ...]]] = [
    ("sanitising (nh3) and plain text", ("(pipeline/feeds/sanitising.py",)),
    ("markup limits (before any parser)", ("(pipeline/feeds/markup_limits.py", "(pipeline/feeds/xml_guard.py")),
    ("feedparser (XML, dates, URLs)", ("(feedparser/",)),
    ("pickling and the pipe", ("(pipeline/feeds/budget_worker.py", "(pickle")),
]
# A Dramatiq worker thread's loop; its consumer, heartbeat and main threads are not counted.
_WORKER_THREAD = "WorkerThread.run ("
_HANDLING = "process_message ("
_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_PROCESS = re.compile(r"^process (?P<pid>\d+):")


@dataclass
class Profile:
    worker_pids: frozenset[int]
    samples: Counter[str] = field(default_factory=Counter)  # share -> samples of worker threads
    busy_leaves: Counter[str] = field(default_factory=Counter)  # innermost frame of busy worker threads
    child_leaves: Counter[str] = field(default_factory=Counter)  # innermost frame of parse children, on CPU
    child_samples: int = 0
    child_shares: Counter[str] = field(default_factory=Counter)
    poll_shares: Counter[str] = field(default_factory=Counter)  # share -> samples of busy poll threads

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def shares(self) -> dict[str, float]:
        return {name: count / self.total for name, count in self.samples.most_common()} if self.total else {}


def pyspy_path() -> str | None:
    """py-spy from this interpreter's environment (.venv/bin, not always on PATH), else from PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def read_profile(text: str, worker_pids: Collection[int], main_pid: int) -> Profile:
    """The profile of the worker processes `worker_pids`; stacks of other processes under Dramatiq's main
    process `main_pid` are their parse children's (the main process's own are left out)."""
    profile = Profile(frozenset(worker_pids))
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        stack, count = match["stack"], int(match["count"])
        frames = stack.split(";")
        # With --subprocesses each stack starts with its process and its parents: the last one is its own.
        processes = [m for m in map(_PROCESS.match, frames) if m]
        pid = int(processes[-1]["pid"]) if processes else main_pid
        if pid == main_pid:
            continue
        if pid not in profile.worker_pids:
            # A parse child: only its samples on CPU say what parsing costs (idle ones wait for work).
            if "read_frame (" not in stack:
                profile.child_samples += count
                profile.child_leaves[frames[-1]] += count
                share = next((name for name, markers in CHILD_SHARES if any(m in stack for m in markers)), "other")
                profile.child_shares[share] += count
            continue
        if _POLL in stack:
            share = next((name for name, markers in POLL_SHARES if any(m in stack for m in markers)), "other")
            profile.poll_shares[share] += count
            continue
        if _WORKER_THREAD not in stack:
            continue
        if _HANDLING not in stack:
            profile.samples[IDLE] += count
            continue
        share = next((name for name, markers in SHARES if any(m in stack for m in markers)), "other")
        profile.samples[share] += count
        profile.busy_leaves[frames[-1]] += count
    return profile
