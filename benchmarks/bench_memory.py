"""Memory per process after a 10,000-article run: the resident memory (RSS and PSS) of each process
`make run` starts, once together they have scraped, processed and served 10,000 articles.

    make bench BENCH=memory                 # 500 feeds × 20 items = 10,000 articles, a few minutes
    BENCH_QUICK=1 make bench BENCH=memory   # 80 articles, ~30 s

- Processes: the four programs of scripts/supervisord.conf (web, worker-scraping, worker-processing,
  scheduler), their command lines and environment read from that file and run as they are (the
  interpreter and gunicorn are this .venv's), against the bench database and a Redis of their own.
- The run: feeds from benchmarks/feed_server.py (a process of its own, 20 short items per feed, no article
  page fetched: `full_text=never`), all due when the processes start; the scheduler's start-up sweeps send
  the scrapes, the scraping worker stores the articles and chains their processing, the processing worker
  embeds and classifies them (all-MiniLM-L6-v2) and groups them into stories. Once every article is
  processed the web server answers API requests: article list pages, similar articles, searches.
- Measured: /proc/PID/smaps_rollup of every process of each program (Dramatiq's main process and its
  worker process, gunicorn's master and workers, the scraping worker's parse children), before and after
  the API requests. RSS counts shared pages in full in every process that maps them; PSS divides them
  among those processes, so PSS adds up to the machine's use. "Model loaded" is whether the process has
  torch mapped: the model is the only thing that imports it (pipeline/understanding/embedding.get_model,
  on first use).
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import local_stack, scale
from benchmarks.feed_server import ITEMS_PER_FEED

ROOT = Path(__file__).resolve().parent.parent
SUPERVISORD_CONF = ROOT / "scripts" / "supervisord.conf"
QUICK = scale.QUICK
ARTICLES = 80 if QUICK else 10_000  # quick: a smoke test within the quick run's 3 minutes
FEEDS = ARTICLES // ITEMS_PER_FEED
HOSTS = [f"127.0.0.{i}" for i in range(2, 6)]
PROGRAMS = ["web", "worker-scraping", "worker-processing", "scheduler"]
RUN_TIMEOUT_SECONDS = 3600
LIST_PAGES = 5
SIMILAR_REQUESTS = 20
SEARCHES = [
    "interest rates and the central bank",
    "football transfer news",
    "new chip factory",
    "film festival awards",
    "school meals funding",
    "coastal flooding defences",
    "rail fares rise",
    "vaccine trial results",
    "trade talks collapse",
    "broadband roll-out delays",
]


def program_commands(port: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each program's argv and extra environment, as scripts/supervisord.conf gives them.

    The interpreter and gunicorn are the ones beside this process's interpreter: the same .venv."""
    config = configparser.RawConfigParser()
    config.read(SUPERVISORD_CONF)
    programs = {}
    for name in PROGRAMS:
        section = config[f"program:{name}"]
        command = section["command"].replace("%(here)s", str(SUPERVISORD_CONF.parent))
        argv = shlex.split(command.replace("%(ENV_PORT)s", str(port)))
        argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
        env = {}
        for pair in shlex.split(section.get("environment", "").replace(",", " ")):
            key, _, value = pair.partition("=")
            env[key] = value
        programs[name] = (argv, env)
    return programs


def compose_memory_limits() -> dict[str, str]:
    """The memory limit docker-compose.yml gives each program's service ("" when none)."""
    import yaml  # PyYAML: drf-spectacular's dependency

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return {
        name: str(services.get(name, {}).get("deploy", {}).get("resources", {}).get("limits", {}).get("memory", ""))
        for name in PROGRAMS
    }


def model_loaded(pid: int) -> bool:
    """Whether `pid` has torch mapped: only get_model imports it, on the model's first use."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def _command_name(pid: int) -> str:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return " ".join(argv[:4])


def process_tree(pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of `pid` and its live descendants, parents first."""
    from tests.support.faults import children_of

    found = [(pid, 0)]
    for child in children_of(pid):
        found += [(p, depth + 1) for p, depth in process_tree(child)]
    return found


def _role(program: str, depth: int, pid: int) -> str:
    if program == "web":
        return "gunicorn master" if depth == 0 else "gunicorn worker"
    if program == "scheduler":
        return "scheduler" if depth == 0 else f"child: {_command_name(pid)}"
    if depth == 0:
        return "Dramatiq main process"
    if depth == 1:
        return "worker process"
    return "parse child (feed parsing budget pool)" if program == "worker-scraping" else "child"


def snapshot(processes: dict[str, subprocess.Popen[bytes]]) -> list[dict]:
    rows = []
    for program, popen in processes.items():
        for pid, depth in process_tree(popen.pid):
            try:
                rss, pss = local_stack.memory_mb(pid)
                loaded = model_loaded(pid)
            except (OSError, KeyError):
                continue  # gone meanwhile
            rows.append(
                {"program": program, "role": _role(program, depth, pid), "pid": pid, "rss_mb": rss, "pss_mb": pss}
                | {"model_loaded": loaded}
            )
    return rows


def _reset(port: int) -> None:
    """Empty feeds, articles and task records; the demo topics; FEEDS due feeds on the feed server."""
    from articles.demo_feeds import demo_topics
    from articles.models import Topic

    local_stack.replace_feeds(FEEDS, HOSTS, port)
    for topic in demo_topics():
        Topic.objects.get_or_create(name=topic["name"], defaults={"description": topic["description"]})


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - our own loopback server
        return json.loads(response.read())


def _api_requests(base: str) -> dict[str, int]:
    """List pages, similar articles and searches, one at a time; every answer must be a 200."""
    from django.conf import settings

    from articles.models import Article

    pages = min(LIST_PAGES, -(-ARTICLES // settings.REST_FRAMEWORK["PAGE_SIZE"]))  # a quick run has fewer
    for page in range(1, pages + 1):
        _get(f"{base}/api/articles/?page={page}")
    ids = list(
        Article.objects.filter(status=Article.Status.PROCESSED)
        .order_by("?")
        .values_list("id", flat=True)[:SIMILAR_REQUESTS]
    )
    found = 0
    for article_id in ids:
        found += _get(f"{base}/api/articles/{article_id}/similar/")["count"]
    for query in SEARCHES:
        found += _get(f"{base}/api/search/?" + urllib.parse.urlencode({"q": query}))["count"]
    return {"list": LIST_PAGES, "similar": len(ids), "search": len(SEARCHES), "results": found}


def _wait_processed(processes: dict[str, subprocess.Popen[bytes]], started: float) -> dict[str, float]:
    from django.db.models import Count

    from articles.models import Article

    last_report = 0.0
    while True:
        counts = dict(Article.objects.values_list("status").annotate(n=Count("id")))
        done = counts.get(Article.Status.PROCESSED, 0) + counts.get(Article.Status.FAILED, 0)
        stored = sum(counts.values())
        elapsed = time.monotonic() - started
        if stored >= ARTICLES and done >= stored:
            return {"seconds": elapsed, "processed": counts.get(Article.Status.PROCESSED, 0), "stored": stored}
        for name, popen in processes.items():
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited ({popen.returncode}) during the run")
        if elapsed > RUN_TIMEOUT_SECONDS:
            raise TimeoutError(f"{done} of {ARTICLES} articles processed after {elapsed:.0f} s")
        if elapsed - last_report >= 30:
            print(f"  {elapsed:.0f} s: {stored} articles stored, {done} processed", flush=True)
            last_report = elapsed
        time.sleep(1)


def measure(directory: Path) -> dict:
    from tests.support.faults import PrivateRedis, free_port, wait_until

    # A Redis of its own, as bench_scraping: the shared one may be flushed by a test meanwhile.
    redis_server = PrivateRedis(directory)
    redis_server.start()
    feed_server = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.feed_server", "--feeds", str(FEEDS), "--hosts", ",".join(HOSTS)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        feed_port = int(feed_server.stdout.readline())  # type: ignore[union-attr]
        _reset(feed_port)
        web_port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "newsrec.settings",
            "DATABASE_URL": local_stack.database_url(),
            "REDIS_URL": redis_server.url,
            "FEED_ALLOWED_PRIVATE_HOSTS": ",".join(f"{host}:{feed_port}" for host in HOSTS),
            "VECTOR_INDEX_PATH": str(directory / "vector-index" / "articles.npz"),
            "PORT": str(web_port),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        commands = program_commands(web_port)
        started = time.monotonic()
        for name, (argv, extra_env) in commands.items():
            log = open(directory / f"{name}.log", "wb")  # noqa: SIM115 - handed to the process
            logs.append(log)
            processes[name] = subprocess.Popen(
                argv, cwd=ROOT, env={**env, **extra_env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        run = _wait_processed(processes, started)
        base = f"http://127.0.0.1:{web_port}"
        wait_until(lambda: _get(f"{base}/healthz"), timeout=60, what="web server answering /healthz")
        before = snapshot(processes)
        requests = _api_requests(base)
        time.sleep(2)  # let the web workers settle after the last answer
        after = snapshot(processes)
        return {
            "run": run,
            "requests": requests,
            "before": before,
            "after": after,
            "commands": {name: " ".join(argv[1:]) for name, (argv, _) in commands.items()},
        }
    finally:
        for popen in processes.values():
            local_stack.stop_group(popen)
        local_stack.stop_group(feed_server)
        redis_server.stop()
        for log in logs:
            log.close()


KINDS = {
    "web": "web (gunicorn)",
    "worker-scraping": "scraping worker",
    "worker-processing": "processing worker",
    "scheduler": "scheduler",
}


def run() -> dict:
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    directory = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        result = measure(directory)
    except Exception:
        print(f"  logs kept in {directory}", flush=True)
        raise
    shutil.rmtree(directory, ignore_errors=True)
    after, before = result["after"], result["before"]
    web_before = {row["pid"]: row for row in before if row["program"] == "web"}
    limits = compose_memory_limits()
    table = [["process kind", "process", "RSS MB", "PSS MB", "model loaded", "docker-compose memory limit"]]
    figures: dict[str, object] = {"articles": result["run"]["stored"], "run_seconds": round(result["run"]["seconds"])}
    for program, kind in KINDS.items():
        rows = [row for row in after if row["program"] == program]
        for row in rows:
            table.append(
                [
                    kind,
                    row["role"],
                    f"{row['rss_mb']:.0f}",
                    f"{row['pss_mb']:.0f}",
                    "yes" if row["model_loaded"] else "no",
                    "",
                ]
            )
            if row["pid"] in web_before and row["role"] == "gunicorn worker":
                was = web_before[row["pid"]]
                table.append(
                    [
                        kind,
                        "gunicorn worker, same, before the API requests",
                        f"{was['rss_mb']:.0f}",
                        f"{was['pss_mb']:.0f}",
                        "yes" if was["model_loaded"] else "no",
                        "",
                    ]
                )
        pss = sum(row["pss_mb"] for row in rows)
        key = program.replace("-", "_")
        figures[f"{key}_pss_mb"] = round(pss)
        figures[f"{key}_largest_rss_mb"] = round(max((row["rss_mb"] for row in rows), default=0))
        figures[f"{key}_model_loaded_processes"] = sum(row["model_loaded"] for row in rows)
        table.append(
            [
                kind,
                f"**all {len(rows)} process{'es' if len(rows) > 1 else ''} (PSS adds up)**",
                "",
                f"**{pss:.0f}**",
                "",
                limits[program],
            ]
        )
    total = sum(row["pss_mb"] for row in after)
    figures["total_pss_mb"] = round(total)
    table.append(["**all**", "", "", f"**{total:.0f}**", "", ""])
    requests = result["requests"]
    commands = "; ".join(f"{name}: `{command}`" for name, command in result["commands"].items())
    notes = (
        f"Run {date}, `{scale.command('memory')}`. "
        f"{FEEDS} feeds × {ITEMS_PER_FEED} short items (benchmarks/feed_server.py, no article page fetched) "
        f"= {result['run']['stored']:,} articles scraped by the scraping worker and processed by the processing "
        f"worker ({result['run']['processed']:,} processed) in {result['run']['seconds']:.0f} s from the processes' "
        "start, driven by the scheduler's start-up sweeps; then the web server answered "
        f"{requests['list']} article list pages, {requests['similar']} similar-article and {requests['search']} "
        "search requests, one at a time (all 200). Measured from /proc/PID/smaps_rollup once the answers were "
        "given (the web workers also just before). The processes are the programs of scripts/supervisord.conf "
        f"as `make run` starts them: {commands}; with the bench database and a Redis of their own. RSS counts a "
        "page shared between processes (forked from one parent, or the same library file) in each of them; PSS "
        "shares it out, so PSS adds up across processes. Model loaded: torch mapped in the process, which only "
        "the model's first use imports. The docker-compose limit is the service's (its cgroup also counts page "
        "cache; compose runs the workers with the same arguments)."
    )
    return {
        "title": "Memory per process after a 10,000-article run",
        "figures": figures,
        "table": table,
        "notes": notes,
    }
