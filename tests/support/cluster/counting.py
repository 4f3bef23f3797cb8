"""What a cluster scenario counts, like `make chaos` (scripts/chaos.py):

  sent / completed   task records written / succeeded during the scenario
  redelivered        messages started twice in the same attempt (handed back after their worker vanished)
  duplicates         articles stored twice or processed more than once (a trigger on the article table)
  lost               articles the feeds served that did not end up stored and processed

`problems` lists every claim of the scenario that did not hold; an empty list and 0 duplicates and 0
lost is a pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.support.cluster.topology import Cluster
from tests.support.faults import redelivered, wait_until

SETTLE_TIMEOUT = 240


@dataclass
class Outcome:
    scenario: str
    sent: int = 0
    completed: int = 0
    redelivered: int = 0
    duplicates: int = 0
    lost: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def check(self, holds: bool, claim: str) -> None:
        if not holds:
            self.problems.append(claim)

    @property
    def passed(self) -> bool:
        return not self.problems and not self.duplicates and not self.lost


def settle(cluster: Cluster, expected: int, timeout: float = SETTLE_TIMEOUT) -> bool:
    """Wait until `expected` articles are processed, none pending, and no queue holds a message."""
    client = cluster.stack.redis.client()

    def done() -> bool:
        counts = cluster.stack.article_counts()
        if counts.get("processed", 0) < expected or counts.get("pending"):
            return False
        keys = [k for k in client.scan_iter("newsrec:*.msgs") if b".XQ." not in k]
        return not any(client.hlen(k) for k in keys)

    try:
        wait_until(done, timeout=timeout, interval=1.0, what="batch settled")
        return True
    except TimeoutError:
        return False


def count(cluster: Cluster, name: str, expected: int, started: float) -> Outcome:
    stack = cluster.stack
    rows = stack.scalar("SELECT count(*) FROM articles_article")
    distinct = stack.scalar("SELECT count(DISTINCT (feed_id, guid)) FROM articles_article")
    events = stack.processing_events()
    records = dict(stack.query("SELECT status, count(*) FROM pipeline_taskrecord GROUP BY status"))
    return Outcome(
        name,
        sent=sum(records.values()),
        completed=records.get("succeeded", 0),
        redelivered=len(redelivered(stack.deliveries())),
        duplicates=(rows - distinct) + sum(n - 1 for n in events.values() if n > 1),
        lost=max(0, expected - stack.article_counts().get("processed", 0)),
        seconds=time.monotonic() - started,
    )


def processed_per_host(cluster: Cluster) -> dict[str, int]:
    rows = cluster.stack.query(
        "SELECT split_part(worker, ':', 1), count(*) FROM pipeline_taskrecord"
        " WHERE actor_name = 'process_articles' AND status = 'succeeded' GROUP BY 1"
    )
    return dict(rows)


def table(outcomes: list[Outcome]) -> str:
    head = (
        f"{'scenario':<40} {'sent':>6} {'completed':>9} {'redelivered':>11} {'duplicates':>10} {'lost':>5} {'time':>6}"
    )
    lines = ["", head, "-" * len(head)]
    for o in outcomes:
        lines.append(
            f"{o.scenario:<40} {o.sent:>6} {o.completed:>9} {o.redelivered:>11} {o.duplicates:>10} {o.lost:>5}"
            f" {o.seconds:>5.0f}s"
        )
        lines += [f"    {note}" for note in o.notes]
        lines += [f"    FAILED: {problem}" for problem in o.problems]
    return "\n".join(lines)
