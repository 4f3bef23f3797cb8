"""newsrec on several hosts of one machine, proven: web, two worker hosts, the scheduler, a feed server
and the database host are Linux network namespaces on a bridge of their own (tests/support/cluster/).

Each scenario adds feeds through the web host's API and counts what happened to every article:
everything separate (stored and processed once, found by a search on web, no var/ shared), a network
cut (worker-2 off for 60 s reconnects by itself), web cut off from Redis (503 at once, reads work,
work queued afterwards completes) and a host lost (worker-1 SIGKILLed and unplugged: its messages go to
worker-2 within 2 minutes). `make cluster` runs the same scenarios and prints the table. Needs root.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster.counting import Outcome, table
from tests.support.cluster.network import unavailable_reason
from tests.support.cluster.scenarios import (
    RUN_SETTINGS,
    everything_separate,
    host_lost,
    network_cut,
    web_cut_from_redis,
)
from tests.support.cluster.topology import Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

OUTCOMES: list[Outcome] = []


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Cluster.running(**RUN_SETTINGS) as cluster:
        yield cluster
    # The table of what each scenario cost, shown like `make chaos` shows it, past pytest's capture.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and OUTCOMES:
        with capture.global_and_fixture_disabled():
            print(table(OUTCOMES), flush=True)


def run(cluster: Cluster, scenario) -> Outcome:  # type: ignore[no-untyped-def]
    outcome = scenario(cluster)
    OUTCOMES.append(outcome)
    assert (outcome.duplicates, outcome.lost, outcome.problems) == (0, 0, []), table([outcome])
    return outcome


def test_everything_separate(cluster: Cluster) -> None:
    outcome = run(cluster, everything_separate)
    assert outcome.completed > 0


def test_network_cut_heals_without_restart(cluster: Cluster) -> None:
    run(cluster, network_cut)


def test_web_cut_off_from_redis(cluster: Cluster) -> None:
    run(cluster, web_cut_from_redis)


def test_host_lost(cluster: Cluster) -> None:
    """Last: worker-1 stays lost."""
    outcome = run(cluster, host_lost)
    assert outcome.figures["redelivery"] <= 120
