"""Hosts as network namespaces, each with a veth pair to a bridge that lives in a namespace of its own.

The root namespace (the test process, the machine's own Postgres and Redis) is never connected to the
cluster's subnet: every link runs from a host namespace to the bridge namespace. Names carry a short
random suffix and the subnet a random third octet, so two runs, or a leftover of a killed one, never
collide; `clean_leftovers` removes what a dead run left behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "nrc"  # every namespace of every run starts with it
RUNS_DIR = Path("/var/tmp")  # each run's directory: /var/tmp/newsrec-cluster-<suffix>
RUN_DIR_PREFIX = "newsrec-cluster-"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable_reason() -> str | None:
    """Why this machine cannot build namespaces (not root, no iproute2), or None when it can."""
    if os.geteuid() != 0:
        return "the cluster harness needs root (ip netns)"
    if not shutil.which("ip") or not shutil.which("unshare"):
        return "the cluster harness needs iproute2 (ip netns) and util-linux (unshare)"
    probe = f"{PREFIX}probe{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


def namespaces() -> list[str]:
    listed = ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listed if line.strip()]


def kill_namespace_processes(namespace: str) -> None:
    for pid in ip("netns", "pids", namespace, check=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def _owner_alive(run_dir: Path) -> bool:
    try:
        os.kill(int((run_dir / "owner.pid").read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def clean_leftovers() -> list[str]:
    """Remove the namespaces, processes and directories of earlier runs whose owner process is gone."""
    removed = []
    for namespace in namespaces():
        if not namespace.startswith(PREFIX) or "-" not in namespace:
            continue
        suffix = namespace[len(PREFIX) :].split("-", 1)[0]
        if _owner_alive(RUNS_DIR / f"{RUN_DIR_PREFIX}{suffix}"):
            continue  # another run, still going
        kill_namespace_processes(namespace)
        ip("netns", "del", namespace, check=False)
        removed.append(namespace)
    for run_dir in RUNS_DIR.glob(f"{RUN_DIR_PREFIX}*"):
        if not _owner_alive(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
    return removed


@dataclass
class Network:
    """A bridge namespace and one namespace per host, on 198.18.<octet>.0/24 (RFC 2544's test range)."""

    suffix: str = field(default_factory=lambda: secrets.token_hex(3))
    octet: int = field(default_factory=lambda: 1 + secrets.randbelow(254))
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> namespace
    addresses: dict[str, list[str]] = field(default_factory=dict)  # host name -> its addresses
    ports: dict[str, str] = field(default_factory=dict)  # host name -> its veth end in the bridge namespace

    @property
    def bridge_namespace(self) -> str:
        return f"{PREFIX}{self.suffix}-switch"

    def address(self, host_number: int) -> str:
        return f"198.18.{self.octet}.{host_number}"

    def create_bridge(self) -> None:
        ns = self.bridge_namespace
        ip("netns", "add", ns)
        ip("-n", ns, "link", "add", "br0", "type", "bridge")
        ip("-n", ns, "link", "set", "br0", "up")

    def add_host(self, name: str, *numbers: int) -> str:
        """A namespace for `name` with eth0 on the bridge and one address per number; returns the namespace."""
        ns = f"{PREFIX}{self.suffix}-{name}"
        port = f"p{len(self.hosts)}"
        ip("netns", "add", ns)
        # Both ends are made where they belong: the link never exists in the root namespace.
        ip("-n", self.bridge_namespace, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("-n", self.bridge_namespace, "link", "set", port, "master", "br0", "up")
        addresses = [self.address(n) for n in numbers]
        for address in addresses:
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = ns
        self.addresses[name] = addresses
        self.ports[name] = port
        return ns

    def link(self, host: str, up: bool) -> None:
        """Pull (or plug back) the host's cable: its switch port goes down, so nothing crosses either way."""
        ip("-n", self.bridge_namespace, "link", "set", self.ports[host], "up" if up else "down")

    def block_route(self, host: str, address: str, blocked: bool) -> None:
        """Inside `host`, make `address` unreachable (an `unreachable` route for its /32), or reachable again."""
        ip("-n", self.hosts[host], "route", "add" if blocked else "del", "unreachable", f"{address}/32")

    def teardown(self) -> None:
        for ns in [*self.hosts.values(), self.bridge_namespace]:
            kill_namespace_processes(ns)
            ip("netns", "del", ns, check=False)
        self.hosts.clear()
