"""A whole cluster: the network, six hosts, their services, and an observer view for counting.

The test process observes through Unix sockets the db host's Postgres and Redis also listen on, and
talks HTTP to web only through an agent running inside the web host (http_agent.py), so it never
opens a socket to the cluster's subnet. Everything is torn down on exit, even when the run fails.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.support.cluster import services
from tests.support.cluster.hosts import Host
from tests.support.cluster.network import RUN_DIR_PREFIX, RUNS_DIR, Network, clean_leftovers
from tests.support.faults import AUDIT_SQL, ROOT, Stack, wait_until

# Host name -> the last octets of its addresses. The db host's second address is Redis's alone.
HOSTS = {"db": (2, 12), "web": (3,), "worker-1": (4,), "worker-2": (5,), "sched": (6,), "feeds": (7,)}
WORKER_HOSTS = ("worker-1", "worker-2")
APP_HOSTS = ("web", *WORKER_HOSTS, "sched")


@dataclass
class ObserverPostgres:
    sockets: Path

    def url(self, database: str = "newsrec") -> str:
        return services.observer_database_url(self.sockets, database)


@dataclass
class ObserverRedis:
    sockets: Path

    def client(self) -> redis.Redis:
        return services.observer_redis(self.sockets)


@dataclass
class Cluster:
    network: Network
    root: Path
    hosts: dict[str, Host]
    stack: Stack  # faults.Stack's counting helpers, over the observer sockets
    agent: subprocess.Popen[str] | None = None
    token: str = ""
    feeds_base: str = ""
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def redis_address(self) -> str:
        return self.hosts["db"].addresses[1]

    def api(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A request made by the agent on the web host: {"status", "seconds", "body"}."""
        assert self.agent is not None and self.agent.stdin and self.agent.stdout
        self.agent.stdin.write(json.dumps({"method": method, "path": path, "json": body}) + "\n")
        self.agent.stdin.flush()
        line = self.agent.stdout.readline()
        if not line:
            raise RuntimeError("the HTTP agent on the web host has gone")
        return json.loads(line)

    def host_of_pid(self) -> dict[int, str]:
        return {pid: name for name in WORKER_HOSTS for pid in self.hosts[name].pids()}

    def live_workers(self) -> dict[str, dict[str, Any]]:
        """Worker heartbeats in Redis (pipeline.taskqueue.heartbeats), by `host:pid`."""
        client = self.stack.redis.client()
        keys = list(client.scan_iter("newsrec:workers:*"))
        return {k.decode().split(":", 2)[2]: json.loads(v) for k, v in zip(keys, client.mget(keys)) if v}

    def teardown(self) -> None:
        if self.agent and self.agent.poll() is None:
            self.agent.kill()
        for host in self.hosts.values():
            host.stop_all()
        self.network.teardown()
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    @contextmanager
    def running(cls, **settings: str) -> Iterator[Cluster]:
        import time

        started = time.monotonic()
        clean_leftovers()
        network = Network()
        root = RUNS_DIR / f"{RUN_DIR_PREFIX}{network.suffix}"
        root.mkdir()
        root.chmod(0o755)  # the postgres user must be able to enter it
        (root / "owner.pid").write_text(str(os.getpid()))
        sockets = root / "sock"
        sockets.mkdir()
        (ROOT / "var").mkdir(exist_ok=True)  # the mount point of each host's own var/
        cluster = cls(network, root, {}, Stack(root, ObserverPostgres(sockets), ObserverRedis(sockets)))  # type: ignore[arg-type]
        atexit.register(cluster.teardown)
        try:
            network.create_bridge()
            for name, numbers in HOSTS.items():
                network.add_host(name, *numbers)
                (root / "hosts" / name).mkdir(parents=True)
            for name in HOSTS:
                hidden = [root / "hosts" / other for other in HOSTS if other != name]
                if name != "db":
                    hidden.append(sockets)
                cluster.hosts[name] = Host(
                    name, network.hosts[name], network.addresses[name], root / "hosts" / name, hidden
                )
            hosts = cluster.hosts
            services.start_postgres(hosts["db"], sockets)
            services.start_redis(hosts["db"], sockets)
            feeds_address = hosts["feeds"].address
            cluster.feeds_base = f"http://{feeds_address}:{services.FEEDS_PORT}"
            for name in APP_HOSTS:
                hosts[name].env = {
                    **services.app_env(hosts["db"], feeds_address, **settings),
                    **services.host_env(hosts[name], ROOT / "var"),
                }
            hosts["web"].manage("migrate", "--noinput")
            cluster.stack.execute(AUDIT_SQL)
            cluster.token = hosts["web"].run_django(SETUP_CODE)
            services.start_feeds(hosts["feeds"])
            services.start_web(hosts["web"])
            for name in WORKER_HOSTS:
                services.start_workers(hosts[name])
            services.start_scheduler(hosts["sched"])
            base = f"http://{hosts['web'].address}:{services.WEB_PORT}"
            cluster.agent = subprocess.Popen(
                hosts["web"].command([sys.executable, "-m", "tests.support.cluster.http_agent", base, cluster.token]),
                cwd=ROOT,
                env=hosts["web"].process_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            wait_until(lambda: cluster.api("GET", "/healthz")["status"] == 200, timeout=120, what="web /healthz")
            # A deployed web process is warm: load its model and index before anything is measured.
            cluster.api("GET", "/api/search/?q=warm+up&k=1")
            wait_until(
                lambda: (
                    {w.split(":")[0] for w in cluster.live_workers()} >= set(WORKER_HOSTS)
                    and len(cluster.live_workers()) >= 4
                ),
                timeout=180,
                what="both queues' workers on both worker hosts",
            )
            cluster.setup_seconds = time.monotonic() - started
            yield cluster
        finally:
            cluster.teardown()
            atexit.unregister(cluster.teardown)


SETUP_CODE = """
from articles.demo_feeds import demo_topics
from articles.models import Topic
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
for topic in demo_topics():
    Topic.objects.get_or_create(name=topic['name'], defaults={'description': topic['description']})
user = get_user_model().objects.create_superuser('cluster', password='cluster-password-1')
result = Token.objects.create(user=user).key
"""
