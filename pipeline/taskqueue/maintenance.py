"""Queue maintenance on a clock, not only by chance: a dead worker's messages come back within a bound.

Dramatiq's Redis broker moves the unacknowledged messages of dead workers (heartbeat older than
`heartbeat_timeout`) back onto their queue during "maintenance", which its Lua script
(dramatiq/brokers/redis/dispatch.lua) runs on a random share (`maintenance_chance`) of the commands
sent *for that queue*, acks excepted. A busy processing worker with prefetch 1 sends one such command
per batch, so under a backlog of slow batches a killed worker's message waited minutes (166 s once in
tests/test_crash_recovery.py on a loaded machine). Every live worker process therefore also asks for
maintenance of each queue it consumes every MAINTENANCE_EVERY_SECONDS, from its heartbeat thread.

The request is the broker's own `qsize` command with maintenance forced: the same script, the same
keys, nothing newsrec-specific. It reaches into two private members of Dramatiq 2.2's RedisBroker
(`scripts["dispatch"]`, `_max_unpack_size()`): re-check on upgrade (the requirements pin it).
"""

from __future__ import annotations

import time

from dramatiq.brokers.redis import RedisBroker

# With the 30 s heartbeat timeout: a killed worker's messages are back on their queue within ~40 s.
MAINTENANCE_EVERY_SECONDS = 10.0


def force_maintenance(broker: RedisBroker, queue_name: str) -> None:
    """Run the broker's maintenance for `queue_name` now (requeue dead workers' messages, expire dead letters)."""
    broker.scripts["dispatch"](
        args=[
            "qsize",
            int(time.time() * 1000),
            queue_name,
            broker.broker_id,
            broker.heartbeat_timeout,
            broker.dead_message_ttl,
            1,  # do_maintenance
            broker._max_unpack_size(),
        ],
        keys=[broker.namespace],
    )
