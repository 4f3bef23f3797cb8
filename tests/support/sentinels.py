"""A private Redis master, one replica and three Sentinels on free ports of 127.0.0.1, for failover tests.

Each server runs from its own config file in a temp directory (Sentinels rewrite theirs), in a session
of its own, and is stopped by pid. Quorum 2 of 3, `down-after-milliseconds` 1000: a master killed with
SIGKILL is replaced within a few seconds.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.faults import free_port, wait_until

MASTER_NAME = "newsrec"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000


def redis_server_missing() -> str | None:
    """Why the failover tests cannot run here, or None."""
    if shutil.which("redis-server") is None:
        return "redis-server not installed (apt-get install redis-server): Sentinel failover tests skipped"
    return None


@dataclass
class RedisProcess:
    name: str
    port: int
    conf: Path
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.conf.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
        cmd = ["redis-server", str(self.conf), *(["--sentinel"] if self.sentinel else [])]
        self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._answers, timeout=20, what=f"{self.name} on port {self.port}")

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # in case it was frozen
            self.process.kill()
            self.process.wait(timeout=20)


@dataclass
class SentinelGroup:
    root: Path
    master: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess] = field(default_factory=list)

    @property
    def sentinel_setting(self) -> str:
        """The REDIS_SENTINELS value for this group."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def env(self) -> dict[str, str]:
        """Settings that make a newsrec process find the master through these Sentinels. REDIS_URL names
        an address where nothing listens: only its database is used, so a client that ignored the
        Sentinels would fail at once instead of passing by accident."""
        return {
            "REDIS_SENTINELS": self.sentinel_setting,
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        }

    def master_port(self) -> int | None:
        """The master's port as the first Sentinel that answers names it."""
        for sentinel in self.sentinels:
            try:
                address = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            if address:
                return int(address[1])
        return None

    def wait_for_promotion(self, *, timeout: float = 60) -> float:
        """Block until every Sentinel names the replica as master and it answers as one; returns when."""

        def promoted() -> bool:
            for sentinel in self.sentinels:
                try:
                    address = sentinel.client().sentinel_get_master_addr_by_name(MASTER_NAME)
                except redis.RedisError:
                    return False
                if not address or int(address[1]) != self.replica.port:
                    return False
            return self.replica.client().info("replication")["role"] == "master"

        wait_until(promoted, timeout=timeout, interval=0.05, what="the replica promoted by the Sentinels")
        return time.time()

    def current_master_client(self) -> redis.Redis:
        port = self.master_port()
        assert port is not None, "no Sentinel names a master"
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)

    def stop(self) -> None:
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()


def _server_conf(path: Path, port: int, extra: str = "") -> None:
    path.write_text(
        f'port {port}\nbind 127.0.0.1\ndir {path.parent}\nsave ""\nappendonly no\ndbfilename {path.stem}.rdb\n{extra}'
    )


@contextmanager
def sentinel_group() -> Iterator[SentinelGroup]:
    root = Path(tempfile.mkdtemp(prefix="newsrec-sentinel-", dir="/var/tmp"))
    master = RedisProcess("redis master", free_port(), root / "master.conf")
    replica = RedisProcess("redis replica", free_port(), root / "replica.conf")
    _server_conf(master.conf, master.port)
    _server_conf(replica.conf, replica.port, f"replicaof 127.0.0.1 {master.port}\n")
    group = SentinelGroup(root, master, replica)
    try:
        master.start()
        replica.start()
        wait_until(
            lambda: replica.client().info("replication").get("master_link_status") == "up",
            timeout=30,
            what="the replica in sync",
        )
        for n in range(3):
            port = free_port()
            conf = root / f"sentinel-{n}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {root}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            sentinel = RedisProcess(f"sentinel {n}", port, conf, sentinel=True)
            group.sentinels.append(sentinel)
            sentinel.start()
        # Each Sentinel must know the replica and the other Sentinels before a failover can be agreed on.
        wait_until(
            lambda: all(
                len(s.client().sentinel_slaves(MASTER_NAME)) == 1
                and len(s.client().sentinel_sentinels(MASTER_NAME)) == 2
                for s in group.sentinels
            ),
            timeout=30,
            what="the Sentinels seeing the replica and each other",
        )
        yield group
    finally:
        group.stop()
        shutil.rmtree(root, ignore_errors=True)
