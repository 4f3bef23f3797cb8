"""Fault injection with real processes: private Postgres and Redis, real workers, web and schedulers.

Everything here starts its own servers on free ports under a private directory, so a fault (Redis
restarted with its queues lost, Postgres restarted, a worker killed with SIGKILL) never touches the
machine's shared servers or anyone else's processes. Used by tests/test_crash_recovery.py and by
scripts/chaos.py (`make chaos`).
"""

from __future__ import annotations

import configparser
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

ROOT = Path(__file__).resolve().parents[2]  # the checkout: tests/support/ is two levels down
SUPERVISORD_CONF = ROOT / "scripts" / "supervisord.conf"
DELIVERY_LOG_KEY = "faults:deliveries"  # a Redis list written by tests.support.delivery_log.DeliveryLog


# The broker namespace of a stack's processes (the private Redis is theirs alone).
NAMESPACE = "newsrec"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.2, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; raise TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout:.0f} s")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Pids of the live direct children of `pid` (from /proc)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after it are fixed.
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return sorted(found)


def children_running(pid: int, text: str) -> list[int]:
    """Children of `pid` whose command line contains `text`."""
    found = []
    for child in children_of(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(child)
    return found


def worker_process_of(supervisor_pid: int, queue: str) -> int | None:
    """A worker process (child of Dramatiq's main process) of the program consuming `queue`: its first."""
    processes = worker_processes_of(supervisor_pid, queue)
    return processes[0] if processes else None


def worker_processes_of(supervisor_pid: int, queue: str) -> list[int]:
    """Every worker process of the program consuming `queue` (the scraping worker runs `-p 2`)."""
    for main in children_running(supervisor_pid, f"--queues {queue}"):
        kids = children_of(main)
        if kids:
            return kids
    return []


def pg_bin(name: str) -> str:
    found = shutil.which(name) or max(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), default=None, key=_pg_version)
    if not found:
        raise RuntimeError(f"{name} not found: apt-get install postgresql")
    return found


def _pg_version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in path.split("/")[4].split(".") if p.isdigit())


def _as_pg_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


class PrivatePostgres:
    """A throw-away cluster (trust auth, fsync off) on a free port; restartable to inject faults."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.port = free_port()
        self.log = directory / "postgres.log"

    def url(self, database: str = "newsrec") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_pg_user([pg_bin("pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            cwd="/",
            stdout=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        if os.geteuid() == 0:
            if subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
                subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
            shutil.chown(self.dir, "postgres")
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(
                _as_pg_user([pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N"]),
                check=True,
                cwd="/",
                stdout=subprocess.DEVNULL,
                timeout=120,
            )
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._pg_ctl("-l", str(self.log), "-w", "-o", options, "start")
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'newsrec'").fetchone():
                conn.execute("CREATE DATABASE newsrec")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-m", mode, "-w", "stop")

    def restart(self, mode: str = "immediate") -> None:
        """Stop (by default like a crash: no shutdown checkpoint, every connection cut) and start again."""
        self.stop(mode)
        self.start()


class PrivateRedis:
    """A redis-server with no persistence on a free port: a restart loses every queue."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self) -> None:
        log = open(self.dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._answers, timeout=20, what=f"redis on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was frozen
            self.process.kill()
            self.process.wait(timeout=20)

    def restart(self) -> None:
        """Kill and start again on the same port: queues, results and heartbeats are gone."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the port accepts connections that never answer (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@dataclass
class ManagedProcess:
    """A process this harness started in a session of its own; stop() ends it and its children."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def children(self) -> list[int]:
        return children_of(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 60) -> None:
        if self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


AUDIT_SQL = """
CREATE TABLE IF NOT EXISTS fault_processing_events (
    article_id bigint NOT NULL,
    processed_at timestamptz,
    status text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION fault_record_processing() RETURNS trigger AS $$
BEGIN
    INSERT INTO fault_processing_events (article_id, processed_at, status)
    VALUES (NEW.id, NEW.processed_at, NEW.status);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS fault_processing_audit ON articles_article;
-- Every write that (re)processes an article sets processed_at anew: one event per processing.
CREATE TRIGGER fault_processing_audit AFTER UPDATE ON articles_article FOR EACH ROW
    WHEN (NEW.processed_at IS DISTINCT FROM OLD.processed_at) EXECUTE FUNCTION fault_record_processing();
"""


@dataclass
class Stack:
    """Private Postgres + Redis and the processes started against them (workers, web, schedulers)."""

    root: Path
    postgres: PrivatePostgres
    redis: PrivateRedis
    settings_module: str = "tests.support.fault_settings"
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    @contextmanager
    def running(cls, **extra_env: str) -> Iterator[Stack]:
        root = Path(tempfile.mkdtemp(prefix="newsrec-faults-", dir="/var/tmp"))
        root.chmod(0o755)  # the postgres user must be able to enter it
        (root / "pg").mkdir()
        (root / "redis").mkdir()
        (root / "logs").mkdir()
        stack = cls(root, PrivatePostgres(root / "pg"), PrivateRedis(root / "redis"), extra_env=dict(extra_env))
        try:
            stack.postgres.start()
            stack.redis.start()
            stack.manage("migrate", "--noinput")
            stack.execute(AUDIT_SQL)
            yield stack
        finally:
            stack.stop_all()
            stack.redis.stop()
            try:
                stack.postgres.stop("immediate")
            except subprocess.CalledProcessError:
                pass
            shutil.rmtree(root, ignore_errors=True)

    # --- environment and commands ---

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self.settings_module,
            "DATABASE_URL": self.postgres.url(),
            "REDIS_URL": self.redis.url,
            "NEWSREC_TEST_NAMESPACE": NAMESPACE,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
            "FAULT_STACK_DIR": str(self.root),
            **self.extra_env,
            **overrides,
        }

    def manage(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    def run_django(self, code: str, timeout: float = 120, **env: str) -> Any:
        """Run `code` in a fresh Django process on this stack; it may set `result` (JSON) to return."""
        program = (
            "import django, json, sys\ndjango.setup()\nresult = None\n"
            + code
            + "\nsys.stdout.write('\\n@@RESULT@@' + json.dumps(result))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0 or "@@RESULT@@" not in done.stdout:
            raise RuntimeError(f"django code failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.rsplit("@@RESULT@@", 1)[1])

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.postgres.url(), autocommit=True, connect_timeout=10)

    def execute(self, sql: str, params: Iterable[Any] | None = None) -> None:
        with self.connect() as conn:
            conn.execute(sql, params)  # type: ignore[arg-type]

    def query(self, sql: str, params: Iterable[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def scalar(self, sql: str, params: Iterable[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def reset(self) -> None:
        """Empty the tables the pipeline writes and the Redis database; topics stay."""
        self.execute("TRUNCATE articles_feed, pipeline_taskrecord, fault_processing_events RESTART IDENTITY CASCADE")
        self.redis.client().flushall()

    # --- processes ---

    def spawn(self, name: str, cmd: list[str], **env: str) -> ManagedProcess:
        log = self.root / "logs" / f"{name}-{len(self.processes)}.log"
        handle = open(log, "wb")  # noqa: SIM115 - handed to the child
        popen = subprocess.Popen(
            cmd, cwd=ROOT, env=self.env(**env), stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        process = ManagedProcess(name, popen, log)
        self.processes.append(process)
        return process

    def start_worker(self, queue: str, *, threads: int = 1, prefetch: int | None = 1, **env: str) -> ManagedProcess:
        if prefetch is not None:
            env = {"dramatiq_queue_prefetch": str(prefetch), **env}
        return self.spawn(
            f"worker-{queue}",
            [sys.executable, "manage.py", "rundramatiq", "-Q", queue, "-p", "1", "-t", str(threads)],
            **env,
        )

    def start_web(self, port: int | None = None, **env: str) -> tuple[ManagedProcess, str]:
        port = port or free_port()
        web = self.spawn(
            "web",
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "newsrec.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "--threads",
                "4",
                "--timeout",
                "60",
            ],
            **env,
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(f"{base}/healthz"), timeout=60, what="web server answering /healthz")
        return web, base

    def start_scheduler(self, *args: str, **env: str) -> ManagedProcess:
        return self.spawn("scheduler", [sys.executable, "manage.py", "runscheduler", *args], **env)

    def supervise(self, programs: list[str], **env: str) -> ManagedProcess:
        """Run the named programs of scripts/supervisord.conf under a real supervisord of our own.

        The [program:…] sections are copied as they are (commands, restart policy, environment); only
        supervisord's own files (socket, pid, logs) move into this stack's directory.
        """
        shipped = configparser.RawConfigParser()
        shipped.read(SUPERVISORD_CONF)
        here = str(SUPERVISORD_CONF.parent)
        run_dir = self.root / "supervisor"
        run_dir.mkdir(exist_ok=True)
        conf = configparser.RawConfigParser()
        conf["supervisord"] = {
            "nodaemon": "true",
            "logfile": str(run_dir / "supervisord.log"),
            "pidfile": str(run_dir / "supervisord.pid"),
            "childlogdir": str(run_dir),
        }
        conf["unix_http_server"] = {"file": str(run_dir / "supervisor.sock")}
        conf["rpcinterface:supervisor"] = {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
        }
        conf["supervisorctl"] = {"serverurl": f"unix://{run_dir / 'supervisor.sock'}"}
        for program in programs:
            section = f"program:{program}"
            conf[section] = {key: value.replace("%(here)s", here) for key, value in shipped[section].items()}
        path = run_dir / "supervisord.conf"
        with path.open("w") as handle:
            conf.write(handle)
        return self.spawn(
            "supervisord",
            [str(Path(sys.executable).parent / "supervisord"), "-c", str(path)],
            PORT=env.pop("PORT", str(free_port())),
            **env,
        )

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop()
            except ProcessLookupError:
                pass

    # --- what happened ---

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery of a message to an actor, as logged by the workers (tests.support.delivery_log)."""
        raw = self.redis.client().lrange(DELIVERY_LOG_KEY, 0, -1)
        return [json.loads(item) for item in raw]

    def processing_events(self) -> Counter[int]:
        return Counter(row[0] for row in self.query("SELECT article_id FROM fault_processing_events"))

    def article_counts(self) -> dict[str, int]:
        rows = self.query("SELECT status, count(*) FROM articles_article GROUP BY status")
        return {status: count for status, count in rows}

    def insert_pending_articles(
        self, count: int, *, feed_url: str = "https://feed.invalid/rss", texts: Sequence[str] | None = None
    ) -> list[int]:
        """A (disabled) feed and `count` pending articles, stored as a scrape stores them: short ones with
        distinct text, or the first `count` of `texts` (full articles: the first 8 words as the title,
        the rest as the feed's content, so the model reads as much of each as it would of a real one)."""
        if texts is None:
            entries = (
                "words = ['elections', 'markets', 'football', 'chips', 'films']\n"
                "entries = [ParsedEntry(guid=f'g-{n}', url=f'https://feed.invalid/a/{n}',"
                " title=f'Article {n} about {words[n % 5]}', summary=f'Summary of story number {n}', content='',"
                f" author='', published_at=None) for n in range({count})]\n"
            )
        else:
            if count > len(texts):
                raise ValueError(f"{len(texts)} texts given, not {count}")
            # Handed over in the stack's temporary directory (deleted with it), not in the code string.
            source = self.root / "pending-texts.json"
            source.write_text(json.dumps(list(texts[:count])))
            entries = (
                f"texts = [t.split(' ') for t in json.loads(open({str(source)!r}).read())]\n"
                "entries = [ParsedEntry(guid=f'g-{n}', url=f'https://feed.invalid/a/{n}', title=' '.join(w[:8]),"
                " summary='', content=' '.join(w[8:]), author='', published_at=None) for n, w in enumerate(texts)]\n"
            )
        return self.run_django(
            "from articles.models import Feed\n"
            "from pipeline.feeds.storing import upsert_entries\n"
            "from pipeline.feeds.parsing import ParsedEntry\n"
            f"feed = Feed.objects.create(url={feed_url!r}, title='fault feed', is_active=False,"
            " disabled_reason='fault test')\n" + entries + "result = upsert_entries(feed, entries)\n",
            timeout=300,
        )

    def load_topics(self) -> None:
        self.run_django(
            "from articles.demo_feeds import demo_topics\n"
            "from articles.models import Topic\n"
            "for topic in demo_topics():\n"
            "    Topic.objects.get_or_create(name=topic['name'], defaults={'description': topic['description']})\n"
        )


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our own local server
            return response.status == 200
    except OSError:
        return False


def starts(deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in deliveries if d["event"] == "start"]


def redelivered(deliveries: list[dict[str, Any]]) -> set[str]:
    """Message ids started more than once in the same attempt (a redelivery, not a retry)."""
    counts = Counter((d["message_id"], d["retries"]) for d in starts(deliveries))
    return {message_id for (message_id, _), n in counts.items() if n > 1}


def in_hand(deliveries: list[dict[str, Any]], pid: int) -> set[str]:
    """Message ids process `pid` started and never finished."""
    started = {d["message_id"] for d in deliveries if d["event"] == "start" and d["pid"] == pid}
    finished = {d["message_id"] for d in deliveries if d["event"] == "done" and d["pid"] == pid}
    return started - finished


def held_by_workers(client: redis.Redis, namespace: str = NAMESPACE) -> dict[str, set[str]]:
    """Message ids each worker has fetched and not acknowledged, per queue (Dramatiq's ack sets)."""
    held: dict[str, set[str]] = {}
    prefix = f"{namespace}:__acks__."
    for key in client.scan_iter(f"{prefix}*"):
        # <namespace>:__acks__.<worker uuid>.<queue>, where the queue may be "<name>.DQ"
        queue = key.decode()[len(prefix) :].split(".", 1)[1]
        redis_ids = list(client.smembers(key))
        if not redis_ids:
            continue
        for data in client.hmget(f"{namespace}:{queue}.msgs", redis_ids):
            if data is not None:
                held.setdefault(queue, set()).add(json.loads(data)["message_id"])
    return held


class SlowFeedServer:
    """Feeds over real HTTP from this process, each response held back `delay` seconds (a slow site).

    Item guids are stable, so a feed fetched twice yields the same articles.
    """

    def __init__(self, feeds: int, items_per_feed: int, delay: float = 0.0, slow_hits: int = 1_000_000) -> None:
        """`slow_hits`: only the first this-many requests of each feed are held back."""
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from tests.support.local_http import serve

        self.delay = delay
        self.slow_hits = slow_hits
        self.hits: Counter[str] = Counter()
        self.documents = {f"/feed-{f}.xml": _rss(f, items_per_feed) for f in range(feeds)}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits[self.path] += 1
                body = server.documents.get(self.path)
                if server.hits[self.path] <= server.slow_hits:
                    time.sleep(server.delay)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client killed mid-response (the point of these tests) is not worth a traceback.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._serving = ExitStack()
        self.base_url = self._serving.enter_context(serve(Handler, server_class=QuietServer))

    @property
    def urls(self) -> list[str]:
        return [self.base_url + path for path in self.documents]

    @property
    def items(self) -> int:
        return sum(body.count(b"<item>") for body in self.documents.values())

    def close(self) -> None:
        self._serving.close()


TOPIC_WORDS = [
    "the election and parliament",
    "shares and interest rates",
    "the football match",
    "a new smartphone chip",
    "the film festival",
]


def _rss(feed: int, items: int) -> bytes:
    entries = "".join(
        f"<item><guid>feed{feed}-item{n}</guid><title>Story {n} of feed {feed} about {TOPIC_WORDS[n % 5]}</title>"
        f"<link>https://news.invalid/{feed}/{n}</link><description>Report number {n} on {TOPIC_WORDS[n % 5]}."
        f"</description><pubDate>Mon, 02 Nov 2026 10:{n % 60:02d}:00 GMT</pubDate></item>"
        for n in range(items)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
        f"<link>https://news.invalid/{feed}/</link><description>fault feed</description>{entries}</channel></rss>"
    ).encode()
