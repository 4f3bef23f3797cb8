"""The cluster scenarios: each adds a batch of feeds through the web host's API, injects its fault,
waits for the batch to settle and counts (counting.py), like `make chaos` (scripts/chaos.py).
"""

from __future__ import annotations

import signal
import statistics
import time
from collections import Counter
from collections.abc import Callable
from urllib.parse import quote

from pipeline.search.limits import MAX_K
from tests.support.cluster.counting import SETTLE_TIMEOUT, Outcome, count, processed_per_host, settle
from tests.support.cluster.topology import WORKER_HOSTS, Cluster
from tests.support.faults import in_hand, starts, wait_until

REDELIVERY_DEADLINE = 120  # the bound for a lost host's messages
SEARCH_DEADLINE = 60  # the bound for a search on web to find an article processed elsewhere
CUT_SECONDS = 60
# A silent host's Postgres sessions must go in DATABASE_DEAD_PEER_SECONDS (30) and a little: not in hours.
SESSIONS_DEADLINE = 90
# Every setting a cluster run changes: smaller batches, sweeps every minute, a dead worker noticed sooner.
RUN_SETTINGS = {
    "PROCESSING_BATCH_SIZE": "8",
    "SCRAPE_DUE_FEEDS_CRON": "* * * * *",
    "PROCESS_PENDING_CRON": "* * * * *",
    "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "15000",
}


def add_batch(
    cluster: Cluster,
    batch: int,
    feeds: int,
    items: int,
    *,
    scrape: bool = True,
    full_text: str = "never",
    first: int = 0,
) -> list[int]:
    """Feeds added (and scraped) through the web host's API; returns their ids.

    Article pages are not fetched unless `full_text` says so: politeness allows one page a second per
    site, and every article here comes from the one feeds host.
    """
    ids = []
    for f in range(first, first + feeds):
        url = f"{cluster.feeds_base}/b{batch}/f{f}.xml?items={items}"
        created = cluster.api("POST", "/api/feeds/", {"url": url, "full_text": full_text})
        assert created["status"] == 201, created
        ids.append(created["body"]["id"])
        if scrape:
            queued = cluster.api("POST", f"/api/feeds/{ids[-1]}/scrape/")
            assert queued["status"] == 202, queued
    return ids


def wait_mid_batch(cluster: Cluster, host: str) -> set[str]:
    """Wait until a process of `host` has finished a message and holds another; returns what it holds.

    Any process in the host's namespace counts (pids are read from the namespace each time, not from a
    heartbeat, which names one process and can outlive it)."""

    def mid() -> set[str]:
        deliveries = cluster.stack.deliveries()
        for pid in cluster.hosts[host].pids():
            finished = [d for d in deliveries if d["event"] == "done" and d["pid"] == pid]
            held = in_hand(deliveries, pid)
            if finished and held:
                return held
        return set()

    try:
        return wait_until(mid, timeout=180, interval=0.05, what=f"{host} in the middle of a batch")
    except TimeoutError:
        per_pid = Counter(d["pid"] for d in starts(cluster.stack.deliveries()))
        raise TimeoutError(
            f"{host} never held a message after finishing one; starts per pid {dict(per_pid)},"
            f" {host}'s pids {sorted(cluster.hosts[host].pids())}, workers {sorted(cluster.live_workers())}"
        ) from None


def freeze_mid_batch(cluster: Cluster, host: str, attempts: int = 5) -> set[str]:
    """Stop (SIGSTOP) every process of `host` while it holds a message; returns what it holds then.

    What a running worker holds cannot be read and kept: a message it finishes and acknowledges between
    the read and the fault is no longer held, and nothing would redeliver it. Frozen, it finishes nothing;
    the delivery log is read once what was already in its sockets has arrived."""
    processes = cluster.hosts[host]
    for _ in range(attempts):
        wait_mid_batch(cluster, host)
        pids = processes.signal_everything(signal.SIGSTOP)
        time.sleep(0.5)
        deliveries = cluster.stack.deliveries()
        held = set().union(*(in_hand(deliveries, pid) for pid in pids))
        if held:
            return held
        processes.signal_everything(signal.SIGCONT)  # it finished between the two reads: try again
    raise TimeoutError(f"{host} never held a message when frozen ({attempts} attempts)")


# --- the scenarios ---


def everything_separate(cluster: Cluster) -> Outcome:
    started = time.monotonic()
    cluster.stack.reset()
    feeds, items, pages = 4, 40, 10
    add_batch(cluster, 1, feeds, items)
    # One feed whose article pages the worker hosts fetch from the feeds host too.
    (with_pages,) = add_batch(cluster, 1, 1, pages, full_text="always", first=feeds)
    expected = feeds * items + pages
    lags: list[float] = []
    sampled: set[int] = set()
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while len(lags) < 8 and time.monotonic() < deadline:
        row = cluster.stack.query(
            "SELECT id, title, extract(epoch FROM processed_at) FROM articles_article"
            " WHERE status = 'processed' ORDER BY processed_at DESC LIMIT 1"
        )
        if not row or row[0][0] in sampled:
            if cluster.stack.article_counts().get("processed", 0) >= expected:
                break  # all processed: nothing newer to sample
            time.sleep(0.5)
            continue
        article, title, processed_at = row[0]
        sampled.add(article)
        lag = _search_finds(cluster, article, title, float(processed_at))
        lags.append(lag if lag is not None else float("inf"))
    settled = settle(cluster, expected)
    outcome = count(cluster, "1. everything separate", expected, started)
    outcome.check(settled, "the batch settled")
    fetched = cluster.stack.scalar(
        "SELECT count(*) FROM articles_article WHERE feed_id = %s AND page_status = 'fetched'", [with_pages]
    )
    outcome.check(fetched == pages, f"article pages fetched from the feeds host: {fetched}/{pages}")
    outcome.notes.append(f"{fetched}/{pages} article pages fetched from the feeds host by the worker hosts")
    per_host = processed_per_host(cluster)
    outcome.check(all(per_host.get(h) for h in WORKER_HOSTS), f"both worker hosts processed: {per_host}")
    outcome.check(bool(lags) and max(lags) <= SEARCH_DEADLINE, f"search on web found each sample within 60 s: {lags}")
    found = [lag for lag in lags if lag != float("inf")]
    if found:
        outcome.figures["search_lag_max"] = max(found)
        outcome.notes.append(
            f"search on web found {len(found)}/{len(lags)} sampled articles {statistics.median(found):.1f} s"
            f" (median; max {max(found):.1f} s) after a worker host processed them; processing tasks per host {per_host}"
        )
    seen, wrote = _var_isolation(cluster)
    outcome.check(not seen, f"no host sees another's var/: {seen}")
    outcome.notes.append("var/ per host: " + "; ".join(f"{h}: {', '.join(sorted(f)) or '-'}" for h, f in wrote.items()))
    return outcome


def _search_finds(cluster: Cluster, article: int, title: str, processed_at: float) -> float | None:
    """Seconds from an article's processing until a search on web returns it; None past the deadline."""
    while time.time() - processed_at <= SEARCH_DEADLINE:
        found = cluster.api("GET", f"/api/search/?q={quote(title)}&k={MAX_K}")
        if found["status"] == 200 and article in {r["id"] for r in found["body"]["results"]}:
            return time.time() - processed_at
        time.sleep(0.5)
    return None


def _var_isolation(cluster: Cluster) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """What each host sees of the others' var/ (must be nothing), and the top level of each var/."""
    seen: dict[str, list[str]] = {}
    for name, host in cluster.hosts.items():
        listing = host.run(["sh", "-c", "ls -A " + " ".join(str(p) for p in host.hidden)]).stdout
        entries = [line for line in listing.split("\n") if line and not line.endswith(":")]
        if entries:
            seen[name] = entries
    wrote = {name: {p.name for p in host.var.iterdir()} for name, host in cluster.hosts.items()}
    return seen, wrote


def network_cut(cluster: Cluster) -> Outcome:
    started = time.monotonic()
    cluster.stack.reset()
    feeds, items = 4, 30
    add_batch(cluster, 3, feeds, items)
    host = cluster.hosts["worker-2"]
    wait_mid_batch(cluster, "worker-2")
    before = host.pids()
    cluster.network.link("worker-2", up=False)
    time.sleep(CUT_SECONDS)
    cluster.network.link("worker-2", up=True)
    restored = time.time()
    back = _heartbeats_after(cluster, "worker-2", restored)
    settled = settle(cluster, feeds * items)
    outcome = count(cluster, "3. worker-2 cut off for 60 s", feeds * items, started)
    outcome.check(settled, "the batch settled")
    outcome.check(back is not None, "worker-2's workers beat again after the link came back")
    outcome.check(host.pids() == before, "worker-2's processes are the same (no restart)")
    if back is not None:
        outcome.figures["reconnect"] = back
        outcome.notes.append(
            f"link down {CUT_SECONDS} s mid-batch; both worker-2 workers beating again {back:.1f} s after it came"
            f" back, same {len(before)} pids: {host.pids() == before}; processing tasks per host {processed_per_host(cluster)}"
        )
    return outcome


def _heartbeats_after(cluster: Cluster, host: str, since: float) -> float | None:
    def fresh() -> float | None:
        beats = [b for name, b in cluster.live_workers().items() if name.startswith(f"{host}:")]
        queues = {q for b in beats if b["beat_at"] > since for q in b["queues"]}
        return time.time() - since if {"scraping", "processing"} <= queues else None

    try:
        return wait_until(fresh, timeout=120, interval=0.5, what=f"{host} heartbeats")
    except TimeoutError:
        return None


def web_cut_from_redis(cluster: Cluster) -> Outcome:
    started = time.monotonic()
    cluster.stack.reset()
    feeds, items = 3, 30
    ids = add_batch(cluster, 4, feeds, items, scrape=False)
    cluster.network.block_route("web", cluster.redis_address, blocked=True)
    try:
        during = [cluster.api("POST", f"/api/feeds/{ids[n % feeds]}/scrape/") for n in range(6)]
        reads = [cluster.api("GET", path)["status"] for path in ("/api/feeds/", "/api/articles/", "/healthz")]
    finally:
        cluster.network.block_route("web", cluster.redis_address, blocked=False)
    after = [cluster.api("POST", f"/api/feeds/{feed}/scrape/")["status"] for feed in ids]
    settled = settle(cluster, feeds * items)
    outcome = count(cluster, "4. web cut off from Redis", feeds * items, started)
    outcome.check(settled, "everything queued after the link returned completed")
    outcome.check(all(r["status"] == 503 for r in during), f"enqueueing answered 503: {[r['status'] for r in during]}")
    outcome.check(reads == [200, 200, 200], f"reads still worked: {reads}")
    outcome.check(after == [202] * feeds, f"enqueueing after the link returned: {after}")
    seconds = [r["seconds"] for r in during]
    outcome.figures["first_503"] = seconds[0]
    outcome.figures["later_503"] = statistics.median(seconds[1:])
    outcome.notes.append(
        f"503 after {seconds[0]:.2f} s for the first request (its pooled broker connection times out), then"
        f" {statistics.median(seconds[1:]):.3f} s (median of {len(seconds) - 1}); reads {reads}; after: {after}"
    )
    return outcome


def host_lost(cluster: Cluster) -> Outcome:
    started = time.monotonic()
    cluster.stack.reset()
    feeds, items = 4, 30
    add_batch(cluster, 2, feeds, items)
    host = cluster.hosts["worker-1"]
    held = freeze_mid_batch(cluster, "worker-1")
    # A lost machine says nothing: its link goes first, so not even the FIN of its dying sockets gets
    # out, and its Postgres sessions (with any lock they hold) stay open until keepalives find them dead.
    # Frozen first, so what it held when it stopped is exactly what worker-2 must get again.
    cluster.network.link("worker-1", up=False)
    killed_pids = host.kill_everything()
    killed = time.time()
    orphans = len(_sessions_from(cluster, host.address))
    survivors = cluster.hosts["worker-2"].pids()
    try:
        wait_until(lambda: not _sessions_from(cluster, host.address), timeout=SESSIONS_DEADLINE, interval=0.5)
        sessions_gone: float | None = time.time() - killed
    except TimeoutError:
        sessions_gone = None
    settled = settle(cluster, feeds * items)
    outcome = count(cluster, "2. worker-1 lost (SIGKILL + link down)", feeds * items, started)
    again: dict[str, float] = {}
    for d in starts(cluster.stack.deliveries()):
        if d["message_id"] in held and d["at"] > killed and d["pid"] in survivors:
            again.setdefault(d["message_id"], d["at"] - killed)
    outcome.check(settled, "the batch settled")
    outcome.check(
        sessions_gone is not None,
        f"the db host dropped worker-1's Postgres sessions within {SESSIONS_DEADLINE} s:"
        f" {_sessions_from(cluster, host.address)}",
    )
    if sessions_gone is not None:
        outcome.figures["sessions dropped"] = sessions_gone
        outcome.notes.append(
            f"{orphans} Postgres session(s) of worker-1 left open by the silent kill, dropped by the db host"
            f" after {sessions_gone:.0f} s (DATABASE_DEAD_PEER_SECONDS 30)"
        )
    outcome.check(set(again) == held, f"every message worker-1 held went to worker-2 ({len(again)}/{len(held)})")
    outcome.check(bool(again) and max(again.values()) <= REDELIVERY_DEADLINE, f"redelivered within 2 min: {again}")
    if again:
        outcome.figures["redelivery"] = max(again.values())
        outcome.notes.append(
            f"{len(killed_pids)} processes killed at once, {len(held)} message(s) in hand, all back on worker-2"
            f" after {max(again.values()):.0f} s (heartbeat timeout 15 s + maintenance every 10 s)"
        )
    return outcome


def _sessions_from(cluster: Cluster, address: str) -> list[tuple[str, str]]:
    """(state, query) of the Postgres sessions the db host still holds for a client at `address`."""
    rows = cluster.stack.query(
        "SELECT state, left(query, 60) FROM pg_stat_activity WHERE client_addr = %s::inet", [address]
    )
    return [(str(state), str(query)) for state, query in rows]


# Run in this order: the lost host goes last, since it stays lost.
SCENARIOS: dict[str, Callable[[Cluster], Outcome]] = {
    "separate": everything_separate,
    "cut": network_cut,
    "redis-cut": web_cut_from_redis,
    "host-lost": host_lost,
}
