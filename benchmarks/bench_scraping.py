"""Ten thousand feeds: how fast the real scraping workers poll them, the first time and when nothing changed.

    make bench BENCH=scraping                # 1,000 feeds × 3 rounds beside the reference worker, the profiles, ~6 minutes
    BENCH_FULL=1 make bench BENCH=scraping   # also 10,000 feeds × 1, ~10 minutes
    BENCH_QUICK=1 make bench BENCH=scraping  # 100 feeds × 2 rounds and the first pass's profile, under a minute

A run without the 10,000 feeds has a title and results key of its own, so it leaves the published full
section alone (benchmarks/scale.py).

- Feeds: benchmarks/feed_server.py in a process of its own, on 8 loopback addresses (127.0.0.2–9, one
  port, allowed by FEED_ALLOWED_PRIVATE_HOSTS): 20 generated items per feed, ETag and Last-Modified,
  304 to a conditional GET. Each feed has `full_text=never`, so no article page is fetched.
- Workers: the scraping worker exactly as `make run` starts it (the command of [program:worker-scraping]
  in scripts/supervisord.conf, read from that file). No processing worker runs: the processing messages
  each scrape queues stay in Redis (counted, then dropped between rounds).
- A pass: every feed is made due, one `scrape_due_feeds` message is sent (the sweep the scheduler sends)
  and the pass ends when every feed has its FeedFetch row; its time runs from the send to the end of the
  last scrape (FeedFetch.started_at + duration). First pass: 200s with 20 items each. Second pass: the
  feeds send back their validators and every answer is a 304.
- Checks per round: articles in Postgres = feeds × 20 after both passes, the server's count of 200s
  and 304s, no feed with an error.
- Beside it, in the same rounds: the reference worker (one feed a message, as before feed batches) and the
  project's worker with one process (`-p 1`) instead of supervisord.conf's one per core.
- Profile: one more first pass with py-spy attached to the worker's processes (benchmarks/scrape_profile.py).

Per-host politeness (HOST_MAX_CONCURRENT_REQUESTS, HOST_MIN_INTERVAL_MS, pipeline/taskqueue/politeness.py)
gates article-page fetches only (scrape_article); feed polls do not go through it, so the number of hosts
does not limit this bench.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import local_stack, scale, scrape_profile

ROOT = Path(__file__).resolve().parent.parent
QUICK = scale.QUICK
# (feeds, rounds)
SIZES = [(100, 2)] if QUICK else [(1000, 3), (10_000, 1)] if scale.FULL else [(1000, 3)]
PROFILE_FEEDS = 100 if QUICK else 1000
# The reference worker (one feed per message, as the sweep sent them before feed batches) runs rounds of
# the first size, alternating with the project's: it is the before/after figure, at ~30 s a round; not in
# the quick run, where it would double the time.
REFERENCE_SETTINGS = "benchmarks.scraping_reference_settings"
REFERENCE = not QUICK
# And the project's worker with one process (`-p 1`, the default before 2026-12-04) in the same rounds: what
# the process per core adds, measured beside it.
ONE_PROCESS = not QUICK
WARM_UP_FEEDS = 20
HOSTS = [f"127.0.0.{i}" for i in range(2, 10)]
ITEMS = 20
PASS_TIMEOUT_SECONDS = 1800
# BENCH_SCRAPING_KEEP=1 keeps the worker's log and py-spy's raw output (always kept when the bench fails).
KEEP_FILES = os.environ.get("BENCH_SCRAPING_KEEP", "") not in ("", "0")


def worker_command(processes: int | None = None) -> list[str]:
    """The scraping worker's command line from scripts/supervisord.conf, run with this interpreter
    (with `-p processes` in place of its own when given)."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "scripts" / "supervisord.conf")
    argv = [sys.executable, *shlex.split(config["program:worker-scraping"]["command"])[1:]]
    if processes is not None:
        argv[argv.index("-p") + 1] = str(processes)
    return argv


class Bench:
    """The feed server, one scraping worker, and the passes run against them."""

    def __init__(self, max_feeds: int) -> None:
        from django.conf import settings
        from dramatiq.brokers.redis import RedisBroker

        from tests.support.faults import PrivateRedis

        self.dir = Path(tempfile.mkdtemp(prefix="bench-scraping-"))
        self.log = open(self.dir / "worker.log", "wb")  # noqa: SIM115 - handed to the worker
        # A Redis of its own: the shared one is flushed (FLUSHDB) by any test that calls cache.clear(),
        # which would drop this bench's queued scrapes mid-pass.
        self.redis = PrivateRedis(self.dir)
        self.redis.start()
        self.client = self.redis.client()
        self.namespace = settings.DRAMATIQ_BROKER["OPTIONS"]["namespace"]
        # Sends the sweep message to the private Redis, the one message this process sends.
        self.broker = RedisBroker(url=self.redis.url, namespace=self.namespace)
        self.server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.feed_server", "--feeds", str(max_feeds), "--hosts", ",".join(HOSTS)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.port = int(self.server.stdout.readline())  # type: ignore[union-attr]
        self.worker: subprocess.Popen[bytes] | None = None

    def start_worker(self, settings_module: str | None = None, processes: int | None = None) -> None:
        """Start the scraping worker (with `settings_module` instead of the project's, `-p processes`
        instead of supervisord.conf's) and warm it up: its start-up (Django, the parse pool) is not counted."""
        self.stop_worker()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module or os.environ.get("DJANGO_SETTINGS_MODULE", "newsrec.settings"),
            "DATABASE_URL": local_stack.database_url(),
            "REDIS_URL": self.redis.url,
            "DRAMATIQ_NAMESPACE": self.namespace,
            "FEED_ALLOWED_PRIVATE_HOSTS": ",".join(f"{host}:{self.port}" for host in HOSTS),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.worker = subprocess.Popen(
            worker_command(processes),
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.reset(WARM_UP_FEEDS)
        self.scrape_pass(WARM_UP_FEEDS)

    def worker_processes(self) -> list[int]:
        """The pids of the Dramatiq worker processes (the children of its main process) that run the actors."""
        from tests.support.faults import children_of, wait_until

        assert self.worker is not None
        return wait_until(lambda: children_of(self.worker.pid), timeout=60, what="worker processes")

    def stop_worker(self) -> None:
        local_stack.stop_group(self.worker)
        self.worker = None

    def stop(self, *, keep_files: bool) -> None:
        """Stop everything; the worker's log and the raw profiles stay in self.dir when `keep_files`."""
        self.stop_worker()
        local_stack.stop_group(self.server)
        self.redis.stop()
        self.log.close()
        if keep_files:
            print(f"  worker log and profiles kept in {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def server_stats(self, reset: bool = False) -> dict[str, int]:
        url = f"http://{HOSTS[0]}:{self.port}/stats" + ("?reset=1" if reset else "")
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback server
            return json.loads(response.read())

    def reset(self, feeds: int) -> None:
        """Empty feeds, articles, polls and task records and the queues; create `feeds` due feeds."""
        local_stack.replace_feeds(feeds, HOSTS, self.port)
        # The worker is idle here: its queues, the processing messages left over, results, all go.
        self.client.flushdb()
        self.server_stats(reset=True)

    def scrape_pass(self, feeds: int) -> dict[str, float]:
        """Make every feed due, send the sweep, wait until each feed has a poll newer than the send."""
        from django.utils import timezone

        from articles.models import Article, Feed, FeedFetch
        from pipeline.actors import PROCESSING, scrape_due_feeds
        from tests.support.faults import wait_until

        Feed.objects.update(next_fetch_at=timezone.now() - timedelta(minutes=1))
        FeedFetch.objects.all().delete()
        before = Article.objects.count()
        self.server_stats(reset=True)
        assert self.worker is not None and self.server is not None
        cpu = {
            "worker": local_stack.group_cpu_seconds(self.worker.pid),
            "server": local_stack.group_cpu_seconds(self.server.pid),
        }
        sent = timezone.now()
        self.broker.enqueue(scrape_due_feeds.message())
        wait_until(
            lambda: FeedFetch.objects.count() >= feeds or self.worker.poll() is not None,  # type: ignore[union-attr]
            timeout=PASS_TIMEOUT_SECONDS,
            interval=0.25,
            what=f"{feeds} feeds polled",
        )
        if self.worker.poll() is not None:
            raise RuntimeError(f"the scraping worker exited; see {self.log.name}")
        worker_cpu = local_stack.group_cpu_seconds(self.worker.pid) - cpu["worker"]
        server_cpu = local_stack.group_cpu_seconds(self.server.pid) - cpu["server"]
        ends = [
            f.started_at + timedelta(milliseconds=f.duration_ms)
            for f in FeedFetch.objects.only("started_at", "duration_ms")
        ]
        seconds = (max(ends) - sent).total_seconds()
        answers = self.server_stats()
        stored = Article.objects.count() - before
        return {
            "seconds": seconds,
            "feeds_per_s": feeds / seconds,
            "articles_stored": stored,
            "articles_per_s": stored / seconds,
            "answers_200": answers.get("200", 0),
            "answers_304": answers.get("304", 0),
            "ok": FeedFetch.objects.filter(status="ok").count(),
            "not_modified": FeedFetch.objects.filter(status="not_modified").count(),
            "errors": Feed.objects.exclude(last_error="").count() + FeedFetch.objects.filter(status="error").count(),
            "processing_messages_queued": self.client.llen(f"{self.namespace}:{PROCESSING}"),
            "worker_cpu_ms_per_feed": worker_cpu / feeds * 1000,
            "server_cpu_ms_per_feed": server_cpu / feeds * 1000,
        }

    def round(self, feeds: int) -> dict[str, float]:
        from articles.models import Article

        self.reset(feeds)
        first = self.scrape_pass(feeds)
        second = self.scrape_pass(feeds)
        return {
            "feeds": feeds,
            "first_seconds": first["seconds"],
            "first_feeds_per_s": first["feeds_per_s"],
            "first_articles_per_s": first["articles_per_s"],
            "second_seconds": second["seconds"],
            "second_feeds_per_s": second["feeds_per_s"],
            "ratio": first["seconds"] / second["seconds"],
            "articles_in_postgres": Article.objects.count(),
            "first_200s": first["answers_200"],
            "second_304s": second["answers_304"],
            "second_200s": second["answers_200"],
            "second_new_articles": second["articles_stored"],
            "errors": first["errors"] + second["errors"],
            "processing_messages_queued": first["processing_messages_queued"],
            "first_worker_cpu_ms": first["worker_cpu_ms_per_feed"],
            "second_worker_cpu_ms": second["worker_cpu_ms_per_feed"],
            "first_server_cpu_ms": first["server_cpu_ms_per_feed"],
            "second_server_cpu_ms": second["server_cpu_ms_per_feed"],
        }

    def profiled_pass(self, feeds: int, *, second: bool = False) -> scrape_profile.Profile | None:
        """A first pass (or, with `second`, the 304 pass after an unrecorded first pass) with py-spy
        recording the worker processes and their parse children throughout."""
        pyspy = scrape_profile.pyspy_path()
        if pyspy is None:
            return None
        assert self.worker is not None
        workers = self.worker_processes()
        self.reset(feeds)
        if second:
            self.scrape_pass(feeds)
        out = self.dir / f"pyspy-{'second' if second else 'first'}.txt"
        recorder = subprocess.Popen(
            [pyspy, "record", "--pid", str(self.worker.pid), "--idle", "--subprocesses", "--rate", "100", "--format", "raw",
             "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(1)  # py-spy attaches
            self.scrape_pass(feeds)
        finally:
            recorder.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
            recorder.wait(60)
        return scrape_profile.read_profile(out.read_text(), workers, self.worker.pid)


def _spread(rounds: list[dict[str, float]], key: str) -> tuple[float, float, float]:
    values = [r[key] for r in rounds]
    return statistics.median(values), min(values), max(values)


def _cell(rounds: list[dict[str, float]], key: str, digits: int = 0, suffix: str = "") -> str:
    median, low, high = _spread(rounds, key)
    if len(rounds) == 1:
        return f"{median:,.{digits}f}{suffix} (1 round)"
    return f"{median:,.{digits}f}{suffix} ({low:,.{digits}f}–{high:,.{digits}f})"


def _profile_section(profile: scrape_profile.Profile | None, what: str) -> tuple[dict[str, object], list[str]]:
    if profile is None:
        return {}, [f"No profile of the {what}: py-spy is not installed (pinned in requirements.txt)."]
    shares = profile.shares()
    busy = sum(profile.busy_leaves.values()) or 1
    top = profile.busy_leaves.most_common(10)
    lines = [
        f"**Profile of the {what}**: py-spy at 100 Hz on the {len(profile.worker_pids)} worker processes, "
        f"{profile.total:,} samples of their worker threads (idle or not; the recording starts 1 s before the "
        "pass, while py-spy attaches, so the idle share includes that second: compare the busy shares with each "
        "other). Share of the worker threads' time:",
        "",
        "| where | share |",
        "|---|---|",
        *[f"| {name} | {share:.1%} |" for name, share in shares.items()],
        "",
        "Top functions of busy worker threads (innermost frame; waits show as the call that waits):",
        "",
        "| function | share of busy samples |",
        "|---|---|",
        *[f"| `{frame}` | {count / busy:.1%} |" for frame, count in top],
        "",
    ]
    figures: dict[str, object] = {
        "samples": profile.total,
        "shares": {k: round(v, 4) for k, v in shares.items()},
        "top_functions": [[frame, round(count / busy, 4)] for frame, count in top],
    }
    poll_total = sum(profile.poll_shares.values())
    if poll_total:
        lines += [
            f"Inside the batches' poll threads ({poll_total:,} samples while polling a feed):",
            "",
            "| part of a poll | share |",
            "|---|---|",
            *[f"| {name} | {count / poll_total:.1%} |" for name, count in profile.poll_shares.most_common()],
            "",
        ]
        figures["poll_thread_shares"] = {k: round(v / poll_total, 4) for k, v in profile.poll_shares.items()}
    if profile.child_samples:
        child_total = profile.child_samples
        lines += [
            f"Inside the parse children ({child_total:,} samples on CPU):",
            "",
            "| part of parsing | share |",
            "|---|---|",
            *[f"| {name} | {count / child_total:.1%} |" for name, count in profile.child_shares.most_common()],
            "",
            "| top functions in the parse children | share |",
            "|---|---|",
            *[f"| `{frame}` | {count / child_total:.1%} |" for frame, count in profile.child_leaves.most_common(5)],
            "",
        ]
        figures["parse_child_shares"] = {k: round(v / child_total, 4) for k, v in profile.child_shares.items()}
    return figures, lines


def _summary(feeds: int, rounds: list[dict[str, float]]) -> dict[str, object]:
    return {
        "rounds": len(rounds),
        "first_feeds_per_s_median": round(_spread(rounds, "first_feeds_per_s")[0], 1),
        "first_articles_per_s_median": round(_spread(rounds, "first_articles_per_s")[0]),
        "second_feeds_per_s_median": round(_spread(rounds, "second_feeds_per_s")[0], 1),
        "ratio_median": round(_spread(rounds, "ratio")[0], 2),
        "articles_exactly_once": all(
            r["articles_in_postgres"] == feeds * ITEMS and r["second_new_articles"] == 0 for r in rounds
        ),
        "answers_200_then_304": all(
            r["first_200s"] == feeds and r["second_304s"] == feeds and r["second_200s"] == 0 for r in rounds
        ),
        "errors": sum(r["errors"] for r in rounds),
        "per_round": [{k: round(v, 3) for k, v in r.items()} for r in rounds],
    }


def _row(label: str, feeds: int, rounds: list[dict[str, float]], summary: dict[str, object]) -> list[str]:
    return [
        f"{label}{feeds:,} × {len(rounds)}",
        _cell(rounds, "first_feeds_per_s", 1),
        _cell(rounds, "first_articles_per_s"),
        _cell(rounds, "second_feeds_per_s", 1),
        _cell(rounds, "ratio", 1, "×"),
        f"{_cell(rounds, 'first_worker_cpu_ms', 2)} / {_cell(rounds, 'second_worker_cpu_ms', 2)}",
        f"{_cell(rounds, 'first_server_cpu_ms', 2)} / {_cell(rounds, 'second_server_cpu_ms', 2)}",
        f"{int(rounds[0]['articles_in_postgres']):,} ({'exactly once' if summary['articles_exactly_once'] else 'MISMATCH'})",
    ]


def run() -> dict:
    from django.conf import settings  # the worker's own: it runs with this environment

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    bench = Bench(max(feeds for feeds, _ in SIZES))
    results: dict[int, list[dict[str, float]]] = {}
    reference: list[dict[str, float]] = []
    one_process: list[dict[str, float]] = []
    try:
        for index, (feeds, rounds) in enumerate(SIZES):
            results[feeds] = []
            for _ in range(rounds):
                if REFERENCE and index == 0:
                    bench.start_worker(REFERENCE_SETTINGS)
                    reference.append(bench.round(feeds))
                    print(f"  reference {feeds} feeds: {reference[-1]}", flush=True)
                if ONE_PROCESS and index == 0:
                    bench.start_worker(processes=1)
                    one_process.append(bench.round(feeds))
                    print(f"  one process {feeds} feeds: {one_process[-1]}", flush=True)
                if bench.worker is None or ((REFERENCE or ONE_PROCESS) and index == 0):
                    bench.start_worker()
                results[feeds].append(bench.round(feeds))
                print(f"  {feeds} feeds: {results[feeds][-1]}", flush=True)
        first_profile = bench.profiled_pass(PROFILE_FEEDS)
        second_profile = None if QUICK else bench.profiled_pass(PROFILE_FEEDS, second=True)
    except BaseException:
        bench.stop(keep_files=True)
        raise
    bench.stop(keep_files=KEEP_FILES)

    figures: dict[str, object] = {"quick": QUICK, "worker_command": " ".join(worker_command()[1:])}
    table = [
        [
            "feeds × rounds",
            "1st pass feeds/s",
            "1st pass articles stored/s",
            "2nd pass (all 304) feeds/s",
            "2nd / 1st speed (target ≥ 10×)",
            "worker CPU per feed, 1st / 2nd pass (ms)",
            "feed server CPU per feed, 1st / 2nd pass (ms)",
            "articles in Postgres (= feeds × 20)",
        ]
    ]
    checks = []
    # The workers run beside the project's in the first size's rounds: a row and a check each.
    for key, label, rounds in (
        ("reference", "reference, one feed a message (before): ", reference),
        ("one_process", "one worker process (`-p 1`): ", one_process),
    ):
        if rounds:
            summary = _summary(SIZES[0][0], rounds)
            figures[key] = summary
            table.append(_row(label, SIZES[0][0], rounds, summary))
            checks.append(f"{key.replace('_', ' ')}: {summary['answers_200_then_304']}, {summary['errors']} errors")
    if reference:
        pairs = list(zip(reference, results[SIZES[0][0]], strict=True))
        speedups = {
            "first_pass_speedup_vs_reference": [r["first_seconds"] / f["first_seconds"] for r, f in pairs],
            "second_pass_speedup_vs_reference": [r["second_seconds"] / f["second_seconds"] for r, f in pairs],
        }
        for key, values in speedups.items():
            figures[key] = {"median": round(statistics.median(values), 2), "per_round": [round(v, 2) for v in values]}
    for feeds, rounds in results.items():
        summary = _summary(feeds, rounds)
        figures[f"feeds_{feeds}"] = summary
        table.append(_row("", feeds, rounds, summary))
        checks.append(f"{feeds:,} feeds: {summary['answers_200_then_304']}, {summary['errors']} errors")
    profile_lines: list[str] = []
    for name, profile, what in (
        ("profile_first_pass", first_profile, f"first pass ({PROFILE_FEEDS:,} feeds)"),
        ("profile_second_pass", second_profile, f"304 pass ({PROFILE_FEEDS:,} feeds)"),
    ):
        if profile is None and name == "profile_second_pass" and QUICK:
            continue
        section_figures, lines = _profile_section(profile, what)
        figures[name] = section_figures
        profile_lines += lines
    queued = max(r["processing_messages_queued"] for rounds in results.values() for r in rounds)
    command = scale.command("scraping")
    speedup_text = ""
    if reference:
        first, second = figures["first_pass_speedup_vs_reference"], figures["second_pass_speedup_vs_reference"]
        speedup_text = (
            f"Feed batches (the sweep sends FEED_POLL_BATCH_SIZE={settings.FEED_POLL_BATCH_SIZE} feeds a message, "
            f"fetched by the process's FEED_POLL_CONCURRENCY={settings.FEED_POLL_CONCURRENCY} poll threads, the unchanged and failed ones written in one UPDATE and the "
            f"poll log in one INSERT) against the reference worker in the same run (FEED_POLL_BATCH_SIZE=1, "
            f"FEED_POLL_CONCURRENCY=4: one feed a message, one fetch per worker thread, as before), rounds "
            f"alternating: first pass {first['median']}× as fast (per round {first['per_round']}), 304 pass "  # type: ignore[index]
            f"{second['median']}× (per round {second['per_round']}). "  # type: ignore[index]
        )
    notes = (
        f"Run {started}, `{command}`. One scraping worker as `make run` starts it "
        f"(`{figures['worker_command']}`, from scripts/supervisord.conf, as docker-compose.yml runs it), fed by "
        "the real due-feed sweep (one `scrape_due_feeds` message per pass, which sends the feeds in batches of "
        "FEED_POLL_BATCH_SIZE), on a Redis of its own. Feeds from "
        f"benchmarks/feed_server.py (its own process) on {len(HOSTS)} loopback addresses, {ITEMS} items each "
        "(~12.8 KB), ETag and Last-Modified; `full_text=never` on every feed, so no article page is fetched. "
        f"No processing worker ran: each first pass left {queued:,} `process_articles` messages queued "
        "(dropped between rounds). A pass runs from the sweep's send to the end of the last scrape; figures are "
        f"the median of the rounds with the range{' (10,000 feeds: one round)' if 10_000 in results else ''}. Every round "
        "checks that the server answered each feed 200 then 304 and that no feed recorded an error: "
        + "; ".join(checks)
        + ". Per-host politeness (2 in flight, 1 s apart) gates article pages only, not feed polls, so the "
        "number of hosts does not limit this. " + speedup_text + "CPU per feed: user and system time of the "
        "worker's processes (its worker processes and their parse children) and of the feed server's over a "
        "pass, divided by its feeds; the worker's share of a 304 poll against its share of a first poll is what "
        "bounds the 2nd / 1st speed, the server's runs on the same 2 cores. The machine was shared with other "
        "engineers' work: compare figures within this run.\n\n" + "\n".join(profile_lines)
    )
    sizes = " and ".join(f"{feeds:,}" for feeds in results)
    return {
        "title": f"Scraping: {sizes} feeds, first pass and 304 pass",
        "key": "scraping" if scale.FULL else f"scraping_{'_'.join(str(feeds) for feeds in results)}",
        "figures": figures,
        "table": table,
        "notes": notes,
    }
