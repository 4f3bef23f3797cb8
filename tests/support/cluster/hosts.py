"""A host: a network namespace, a hostname, a var/ of its own, and the processes started in it.

Every process runs through `ip netns exec` (the host's network) and `unshare --uts` (the host's name,
so task records and worker heartbeats say `worker-1:<pid>`). In its mount namespace the host's own
var/ is mounted over the checkout's `var/`, and every other host's var/ is hidden under an empty
tmpfs: a process can neither read nor write another host's var/, and whatever a host's var/ holds
afterwards was written by that host's processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.cluster import network
from tests.support.faults import ROOT, ManagedProcess

# Run as root inside the host's namespaces, before the real command replaces it.
WRAPPER = """
hostname "$CLUSTER_HOSTNAME"
mount --bind "$CLUSTER_VAR" "$CLUSTER_CHECKOUT_VAR"
for hidden in $CLUSTER_HIDE; do mount -t tmpfs -o size=1m tmpfs "$hidden"; done
exec "$@"
"""


@dataclass
class Host:
    name: str
    namespace: str
    addresses: list[str]
    var: Path  # its own var/, the checkout's var/ inside the host
    hidden: list[Path]  # what this host must not see: the other hosts' var/
    env: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        return self.addresses[0]

    def command(self, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "--", "sh", "-c", WRAPPER, "sh", *cmd]

    def process_env(self, **overrides: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.env,
            **overrides,
            "CLUSTER_HOSTNAME": self.name,
            "CLUSTER_VAR": str(self.var),
            "CLUSTER_CHECKOUT_VAR": str(ROOT / "var"),
            "CLUSTER_HIDE": " ".join(str(p) for p in self.hidden),
        }

    def spawn(self, label: str, cmd: list[str], **env: str) -> ManagedProcess:
        logs = self.var.parent.parent / "logs"
        logs.mkdir(exist_ok=True)
        log = logs / f"{self.name}-{label}-{len(self.processes)}.log"
        with open(log, "wb") as handle:
            popen = subprocess.Popen(
                self.command(cmd),
                cwd=ROOT,
                env=self.process_env(**env),
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = ManagedProcess(f"{self.name}/{label}", popen, log)
        self.processes.append(process)
        return process

    def run(self, cmd: list[str], *, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(cmd), cwd=ROOT, env=self.process_env(**env), capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise RuntimeError(f"{self.name}: {' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "manage.py", *args], timeout=timeout)

    def run_django(self, code: str, timeout: float = 120) -> Any:
        """Run `code` in a fresh Django process on this host; it may set `result` (JSON) to return."""
        program = (
            "import django, json, sys\ndjango.setup()\nresult = None\n"
            + code
            + "\nsys.stdout.write('\\n@@RESULT@@' + json.dumps(result))\n"
        )
        done = self.run([sys.executable, "-c", program], timeout=timeout)
        return json.loads(done.stdout.rsplit("@@RESULT@@", 1)[1])

    def pids(self) -> set[int]:
        """Every process in this host's network namespace."""
        listed = network.ip("netns", "pids", self.namespace, check=False).stdout.split()
        return {int(pid) for pid in listed}

    def signal_everything(self, signum: int) -> set[int]:
        """Send `signum` to every process of the host; returns their pids."""
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        return pids

    def kill_everything(self) -> set[int]:
        """SIGKILL every process of the host at once (the machine lost power); returns their pids."""
        return self.signal_everything(signal.SIGKILL)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            try:
                process.stop(timeout=20)
            except ProcessLookupError:
                pass
