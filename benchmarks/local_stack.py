"""What the benches that run the real programs share: stopping a process group they started, the bench
database's URL for those programs, the due feeds they poll on benchmarks/feed_server.py, and the memory
of one of their processes and the CPU time of a process group."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def stop_group(process: subprocess.Popen[Any] | None) -> None:
    """Stop a process started with start_new_session=True, with its group (a worker's children, the
    parse pool); SIGKILL after a minute."""
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def database_url() -> str:
    """DATABASE_URL of the database this (Django) process uses, for the programs it starts."""
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def replace_feeds(count: int, hosts: Sequence[str], port: int) -> None:
    """Empty feeds (with their articles and polls) and task records; create `count` due feeds served by
    the bench feed server on `hosts`, spread over them, none asking for article pages."""
    from django.db import connection

    from articles.models import Feed

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Feed._meta.db_table}, pipeline_taskrecord RESTART IDENTITY CASCADE")
    due = datetime.now(UTC) - timedelta(minutes=1)
    Feed.objects.bulk_create(
        [
            Feed(
                url=f"http://{hosts[i % len(hosts)]}:{port}/feeds/{i}.xml",
                full_text=Feed.FullText.NEVER,
                next_fetch_at=due,
            )
            for i in range(count)
        ],
        batch_size=2000,
    )


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of `pid` in MB, from /proc/PID/smaps_rollup: PSS shares each shared page out among the
    processes that map it, so the PSS of a machine's processes adds up to what they use together."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            values[key] = int(rest.split()[0]) / 1024
    return values["Rss"], values["Pss"]


def group_cpu_seconds(group: int) -> float:
    """CPU time (user + system) of a process group and its descendants: its live processes, the children
    they started in sessions of their own (a worker's parse children, budget.py), and the children they
    have reaped (a parse child replaced, a Dramatiq worker process ended by a restart). A difference of
    two readings is what the group worked in between."""
    processes: dict[int, tuple[int, int, int]] = {}  # pid -> (parent, group, ticks)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime
        processes[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), sum(int(f) for f in fields[11:15]))
    # Descendants by parent pid: the parse children have a session (and process group) of their own.
    members = {pid for pid, (_, pgrp, _) in processes.items() if pgrp == group}
    grown = True
    while grown:
        found = {pid for pid, (parent, _, _) in processes.items() if parent in members} - members
        members |= found
        grown = bool(found)
    ticks = sum(processes[pid][2] for pid in members)
    return ticks / os.sysconf("SC_CLK_TCK")
