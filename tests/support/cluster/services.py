"""What runs on each host: a private Postgres and Redis on `db`, gunicorn on `web`, a scraping and a
processing worker on each worker host, the scheduler on `sched`, the feed server on `feeds`.

App processes get the same settings a real deployment would give them, the database and broker by
the db host's addresses, and nothing of another host: each one's var/ is its own (see hosts.py).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import psycopg
import redis

from tests.support.cluster.hosts import Host
from tests.support.faults import ManagedProcess, pg_bin, wait_until

PG_PORT = 5432
REDIS_PORT = 6379
WEB_PORT = 8000
FEEDS_PORT = 8080


def start_postgres(db: Host, sockets: Path) -> ManagedProcess:
    """initdb into the db host's var/ and run postgres as the postgres user, listening on the db host only.

    Its Unix socket sits in `sockets`, which only the db host and the observing test process see: the
    test reads counts through it without a socket to the cluster's subnet.
    """
    data = db.var / "postgres"
    if shutil.which("setpriv") is None:
        raise RuntimeError("setpriv (util-linux) is needed to run postgres as its own user")
    pg_dir = data.parent
    shutil.chown(pg_dir, "postgres")
    shutil.chown(sockets, "postgres")
    db.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--",
            pg_bin("initdb"), "-D", str(data / "data"), "-U", "postgres", "--auth=trust", "-N"])  # fmt: skip
    # initdb's trust covers only loopback: let the cluster's own subnet in, and nothing else.
    with (data / "data" / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {db.address.rsplit('.', 1)[0]}.0/24 trust\n")
    process = db.spawn(
        "postgres",
        ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups", "--", pg_bin("postgres"),
         "-D", str(data / "data"), "-p", str(PG_PORT), "-k", str(sockets), "-c", f"listen_addresses={db.address}",
         "-c", "fsync=off", "-c", "max_connections=200"],
    )  # fmt: skip
    url = observer_database_url(sockets, "postgres")
    wait_until(lambda: _pg_answers(url), timeout=60, what="postgres on the db host")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE newsrec")
    return process


def _pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def start_redis(db: Host, sockets: Path) -> ManagedProcess:
    """Redis on every address of the db host (the second one is Redis's own, so it can be cut alone)."""
    (db.var / "redis").mkdir()
    process = db.spawn(
        "redis",
        ["redis-server", "--port", str(REDIS_PORT), "--bind", *db.addresses, "--protected-mode", "no",
         "--save", "", "--appendonly", "no", "--dir", str(db.var / "redis"),
         "--unixsocket", str(sockets / "redis.sock"), "--unixsocketperm", "700"],
    )  # fmt: skip
    client = observer_redis(sockets)
    wait_until(lambda: _redis_answers(client), timeout=30, what="redis on the db host")
    return process


def _redis_answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def observer_database_url(sockets: Path, database: str = "newsrec") -> str:
    return f"postgresql://postgres@/{database}?host={sockets}&port={PG_PORT}"


def observer_redis(sockets: Path) -> redis.Redis:
    return redis.Redis(unix_socket_path=str(sockets / "redis.sock"), socket_timeout=10)


def app_env(db: Host, feeds_address: str, **settings: str) -> dict[str, str]:
    """The environment every app process gets, whatever its host: the shared Postgres and Redis, by address."""
    return {
        "DJANGO_SETTINGS_MODULE": "tests.support.cluster.host_settings",
        "DATABASE_URL": f"postgres://postgres@{db.addresses[0]}:{PG_PORT}/newsrec",
        "REDIS_URL": f"redis://{db.addresses[1]}:{REDIS_PORT}/0",
        "NEWSREC_TEST_NAMESPACE": "newsrec",
        "DRAMATIQ_NAMESPACE": "newsrec",
        "FEED_ALLOWED_PRIVATE_HOSTS": f"{feeds_address}:{FEEDS_PORT}",
        "ALLOWED_HOSTS": "*",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        "NEWSREC_DEMO": "0",
        **settings,
    }


def host_env(host: Host, checkout_var: Path) -> dict[str, str]:
    """Paths that must stay on the host: all under the checkout's var/, which inside the host is its own."""
    return {
        "FAULT_STACK_DIR": str(checkout_var),  # fault_settings puts the vector index cache there
        "EMBEDDING_CACHE_DIR": str(checkout_var / "embedding-cache"),
        "TMPDIR": str(checkout_var),
        "HOME": str(checkout_var),  # gunicorn's control socket, any library's ~/.cache
    }


def start_web(web: Host) -> ManagedProcess:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    return web.spawn(
        "gunicorn",
        [gunicorn, "newsrec.wsgi:application", "--bind", f"{web.address}:{WEB_PORT}", "--workers", "1",
         "--threads", "4", "--timeout", "120"],
    )  # fmt: skip


def start_workers(worker: Host) -> list[ManagedProcess]:
    """A scraping and a processing worker, as docs/deploy.md says to run them on another machine."""
    return [
        worker.spawn("scraping", [sys.executable, "manage.py", "rundramatiq", "-Q", "scraping", "-p", "1", "-t", "4"]),
        worker.spawn(
            "processing",
            [sys.executable, "manage.py", "rundramatiq", "-Q", "processing", "-p", "1", "-t", "1"],
            dramatiq_queue_prefetch="1",
        ),
    ]


def start_scheduler(sched: Host) -> ManagedProcess:
    return sched.spawn("scheduler", [sys.executable, "manage.py", "runscheduler"])


def start_feeds(feeds: Host) -> ManagedProcess:
    return feeds.spawn(
        "feeds",
        [sys.executable, "-m", "tests.support.cluster.feeds_server", feeds.address, str(FEEDS_PORT)],
    )
