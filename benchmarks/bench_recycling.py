"""What worker recycling costs: the same batch of articles processed by a real processing worker with
recycling off (the reference), at the defaults (a resident-memory ceiling, WORKER_MAX_MEMORY_PER_CHILD_MB,
and no message count) and with a restart every 5 messages (WORKER_MAX_TASKS_PER_CHILD=5), on a private
Postgres and Redis (tests/support/faults.py). Reports the time per restart, the throughput ratios, what a
restart every 50 messages would cost, and the worker process's resident memory."""

from __future__ import annotations

import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ARTICLES = 960  # 30 batches of 32
EVERY = 5
ROUNDS = 3


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _process_batch(stack, max_tasks: int, max_memory_mb: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from tests.support.faults import starts, wait_until

    stack.reset()
    stack.insert_pending_articles(ARTICLES)
    worker = stack.start_worker(
        "processing",
        WORKER_MAX_TASKS_PER_CHILD=str(max_tasks),
        WORKER_MAX_MEMORY_PER_CHILD_MB=str(max_memory_mb),
        PROCESSING_BATCH_SIZE="32",
    )
    wait_until(worker.children, timeout=60, what="worker process")
    peak = {"rss": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for child in worker.children():
                peak["rss"] = max(peak["rss"], _rss_mb(child))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    stack.manage("process")
    wait_until(
        lambda: stack.article_counts().get("processed", 0) == ARTICLES,
        timeout=900,
        interval=0.2,
        what="batch processed",
    )
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    processes = len({d["pid"] for d in starts(stack.deliveries())})
    worker.stop()
    stack.processes.clear()
    return {"seconds": elapsed, "processes": processes, "peak_rss_mb": peak["rss"]}


def run() -> dict:
    from django.conf import settings

    from tests.support.faults import Stack

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with Stack.running() as stack:
        stack.load_topics()
        _process_batch(stack, 0, 0)  # warm the page cache (model files, Python modules)
        # Recycling off and the defaults alternate, ROUNDS times: the figure is the median per-round ratio.
        pairs = []
        for r in range(ROUNDS):
            off = _process_batch(stack, 0, 0) if r % 2 == 0 else None
            at_defaults = _process_batch(stack, 0, settings.WORKER_MAX_MEMORY_PER_CHILD_MB)
            pairs.append((off or _process_batch(stack, 0, 0), at_defaults))
        recycled = _process_batch(stack, EVERY, 0)
    ratios = sorted(off["seconds"] / at_defaults["seconds"] for off, at_defaults in pairs)
    reference, defaults = pairs[len(pairs) // 2]
    reference = {**reference, "seconds": statistics.median(off["seconds"] for off, _ in pairs)}
    defaults = {**defaults, "seconds": statistics.median(d["seconds"] for _, d in pairs)}
    defaults["processes"] = max(d["processes"] for _, d in pairs)
    restarts = recycled["processes"] - 1
    per_restart = (recycled["seconds"] - reference["seconds"]) / max(restarts, 1)
    per_message = reference["seconds"] / (ARTICLES / 32 + 1)
    projected = per_restart / (50 * per_message)
    return {
        "title": "Worker recycling (WORKER_MAX_MEMORY_PER_CHILD_MB, WORKER_MAX_TASKS_PER_CHILD)",
        "figures": {
            "reference_seconds": round(reference["seconds"], 1),
            "recycled_seconds": round(recycled["seconds"], 1),
            "defaults_seconds": round(defaults["seconds"], 1),
            "defaults_restarts": defaults["processes"] - 1,
            "throughput_ratio_defaults_vs_reference_median": round(statistics.median(ratios), 3),
            "throughput_ratio_defaults_vs_reference_per_round": [round(x, 3) for x in ratios],
            "throughput_ratio_recycled_vs_reference": round(reference["seconds"] / recycled["seconds"], 3),
            "restarts": restarts,
            "seconds_per_restart": round(per_restart, 2),
            "projected_overhead_at_50": round(projected, 3),
            "reference_peak_rss_mb": round(reference["peak_rss_mb"]),
            "recycled_peak_rss_mb": round(recycled["peak_rss_mb"]),
        },
        "table": [
            ["run", "seconds", "worker processes", "peak RSS (MB)"],
            ["recycling off (reference)", f"{reference['seconds']:.1f}", 1, f"{reference['peak_rss_mb']:.0f}"],
            [
                f"defaults: memory ceiling {settings.WORKER_MAX_MEMORY_PER_CHILD_MB} MB, no message count",
                f"{defaults['seconds']:.1f}",
                defaults["processes"],
                f"{defaults['peak_rss_mb']:.0f}",
            ],
            [
                f"restart every {EVERY} messages",
                f"{recycled['seconds']:.1f}",
                recycled["processes"],
                f"{recycled['peak_rss_mb']:.0f}",
            ],
        ],
        "notes": (
            f"Run {started}, `make bench BENCH=recycling`. "
            f"{ARTICLES} articles in batches of 32 (31 messages with the sweep) through one real processing worker. "
            f"A restart costs {per_restart:.1f} s (graceful stop, re-exec, Django and model load); one restart per 50 "
            f"messages would cost {projected:.1%} of the processing time. At the defaults a process restarts only "
            f"when its resident memory passes the ceiling: at most {defaults['processes'] - 1} restarts in a run; "
            f"recycling off / defaults time per round (alternating order): {[round(x, 3) for x in ratios]}, median "
            f"{statistics.median(ratios):.3f}. Seconds are medians of {ROUNDS} rounds for off and defaults, one run "
            "for the restart every 5 messages. Short synthetic articles: the peak RSS says how far below the "
            "ceiling a worker stays."
        ),
    }
