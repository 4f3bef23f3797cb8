"""`make cluster`: newsrec on several hosts of one machine (network namespaces), each scenario counted.

Builds the cluster of tests/support/cluster/ — db (private Postgres and Redis), web, worker-1,
worker-2, sched, feeds — runs the scenarios (everything separate, a network cut, web cut off from
Redis, a host lost) and prints sent / completed / redelivered / duplicates / lost for each, like
`make chaos`. Needs root and `ip netns`. Exits non-zero unless every scenario held.

Usage: .venv/bin/python scripts/cluster.py [--only separate,cut,redis-cut,host-lost]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.cluster.counting import Outcome, table  # noqa: E402
from tests.support.cluster.network import unavailable_reason  # noqa: E402 - after the path set-up
from tests.support.cluster.scenarios import RUN_SETTINGS, SCENARIOS  # noqa: E402
from tests.support.cluster.topology import Cluster  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated: " + ", ".join(SCENARIOS))
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    reason = unavailable_reason()
    if reason:
        print(f"cluster: skipped: {reason}")
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # SIGTERM unwinds like Ctrl-C, so the cluster's teardown runs (a SIGKILLed run is cleaned by the next one).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    outcomes: list[Outcome] = []
    with Cluster.running(**RUN_SETTINGS) as cluster:
        print(f"cluster: {len(cluster.hosts)} hosts on {cluster.network.address(0)}/24 up in "
              f"{cluster.setup_seconds:.0f} s; logs in {cluster.root}/logs", flush=True)  # fmt: skip
        for name in [n for n in SCENARIOS if n in chosen]:
            print(f"cluster: {name}...", flush=True)
            try:
                outcome = SCENARIOS[name](cluster)
            except Exception as error:  # noqa: BLE001 - report it and go on with the next scenario
                outcome = Outcome(name, problems=[f"the scenario itself failed: {type(error).__name__}: {error}"])
            outcomes.append(outcome)
            print(table([outcome]), flush=True)
    print(table(outcomes))
    failed = [o.scenario for o in outcomes if not o.passed]
    print(f"\ncluster: {time.monotonic() - started:.0f} s in all; "
          + ("every scenario held, 0 duplicates, 0 lost" if not failed else "FAILED: " + ", ".join(failed)))  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
