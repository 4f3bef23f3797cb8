"""Every Redis key newsrec reads or writes, built in one place under the configured namespace.

`settings.REDIS_NAMESPACE` (env `DRAMATIQ_NAMESPACE`, default "newsrec") prefixes them all:

- Dramatiq's broker owns `<ns>:<queue>` (the ready list), `<ns>:<queue>.msgs` (every message body
  from enqueue to acknowledgement), `<ns>:<queue>.DQ…` (its delay queue) and `<ns>:<queue>.XQ` /
  `.XQ.msgs` (dead letters, kept 7 days). Their shape is fixed by its Lua script
  (dramatiq/brokers/redis/dispatch.lua); newsrec reads them for the queues page and the sweeps, and
  writes them only to requeue a dead letter. Dramatiq's own heartbeat keys are its business.
- Dramatiq's results backend writes under `<ns>-results:` (settings.DRAMATIQ_RESULT_BACKEND).
- Django's cache (API throttle counters) writes under `<ns>:cache:` (settings.CACHES KEY_PREFIX).
- newsrec's own keys, below: worker heartbeats, schedule slots, pauses and last runs, the
  scheduler's heartbeat, and the flags that coalesce repeated sends.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from dramatiq.common import dq_name, q_name


def namespace() -> str:
    return settings.REDIS_NAMESPACE


# --- Dramatiq's broker keys (read; written only to requeue) ---


def queue_list(queue_name: str) -> str:
    """The list of message ids ready to be fetched from exactly this queue (`<name>.DQ`: its delay queue)."""
    return f"{namespace()}:{queue_name}"


def queue_messages(queue_name: str) -> str:
    """The hash of every message body of the queue, from enqueue until acknowledged."""
    return f"{namespace()}:{queue_name}.msgs"


def worker_acks(broker_id: str, queue: str) -> str:
    """The set of the ids one worker process (its broker id) fetched from this queue and has not acknowledged."""
    return f"{namespace()}:__acks__.{broker_id}.{queue}"


def worker_acks_pattern(queue: str) -> str:
    """Every worker's set of the ids it fetched from exactly this queue and has not acknowledged."""
    return f"{namespace()}:__acks__.*.{queue}"


def delayed_messages(queue_name: str) -> str:
    return f"{namespace()}:{dq_name(q_name(queue_name))}.msgs"


def dead_letters(queue_name: str) -> str:
    """The sorted set of dead-lettered broker ids, scored by when (its bodies: + ".msgs")."""
    return f"{namespace()}:{q_name(queue_name)}.XQ"


def dead_letter_pattern() -> str:
    return f"{namespace()}:*.XQ"


def queue_of_dead_letter_key(key: str) -> str:
    """The queue name inside a key matched by dead_letter_pattern()."""
    return key[len(namespace()) + 1 : -len(".XQ")]


# --- newsrec's own keys ---


def worker_heartbeat(worker: str) -> str:
    return f"{namespace()}:workers:{worker}"


def worker_heartbeat_pattern() -> str:
    return f"{namespace()}:workers:*"


def schedule_slot(job_id: str, slot: datetime) -> str:
    """Claimed with SET NX by the scheduler that enqueues this job's run for `slot`."""
    return f"{namespace()}:schedule:slot:{job_id}:{slot.isoformat()}"


def schedule_paused() -> str:
    """The set of paused job ids (read by every scheduler when a job fires)."""
    return f"{namespace()}:schedule:paused"


def schedule_last_run(job_id: str) -> str:
    return f"{namespace()}:schedule:last:{job_id}"


def scheduler_alive() -> str:
    return f"{namespace()}:scheduler:alive"


def send_requested(name: str) -> str:
    """A flag that coalesces a burst of requests into one delayed message (see enqueue.send_coalesced)."""
    return f"{namespace()}:requested:{name}"


# --- Politeness per host (pipeline/taskqueue/politeness.py), shared by every worker on every machine ---


def host_requests(host: str) -> str:
    """Sorted set of the requests to `host` in flight: lease token scored by when its lease ends (ms)."""
    return f"{namespace()}:host:{host}:requests"


def host_next_start(host: str) -> str:
    """When (ms, Redis clock) the next request to `host` may start: the minimum interval between two."""
    return f"{namespace()}:host:{host}:next"


def host_paused(host: str) -> str:
    """Until when (ms, Redis clock) `host` asked to be left alone (Retry-After on 429/503)."""
    return f"{namespace()}:host:{host}:paused"
