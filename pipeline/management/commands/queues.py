from __future__ import annotations

from datetime import UTC, datetime

import dramatiq
from django.core.management.base import BaseCommand, CommandError

from pipeline.taskqueue import monitoring
from pipeline.taskqueue.dead_letters import list_dead_letters
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable
from pipeline.taskqueue.heartbeats import live_workers


class Command(BaseCommand):
    help = (
        "The admin's queues page in the terminal (Celery's inspect active/reserved): messages ready, delayed, "
        "in flight and dead-lettered per queue, live workers and what they run, stuck tasks."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dead-letters",
            type=int,
            default=10,
            metavar="N",
            help="list up to N dead letters per queue (default 10, 0 for none)",
        )

    def handle(self, *args, dead_letters: int = 10, **options) -> None:
        try:
            with queue_errors_as_unavailable():
                depths = monitoring.queue_depths()
                workers = live_workers(dramatiq.get_broker())
                letters = list_dead_letters(limit=dead_letters) if dead_letters > 0 else []
        except QueueUnavailable as error:
            raise CommandError(str(error)) from None
        out = self.stdout.write
        out(f"{'queue':<24}{'ready':>10}{'delayed':>10}{'in flight':>11}{'dead':>8}")
        for q in depths:
            out(f"{q.name:<24}{q.ready:>10}{q.delayed:>10}{q.in_flight:>11}{q.dead_lettered:>8}")
        now = datetime.now(UTC).timestamp()
        out("")
        out(f"live workers: {len(workers)}")
        for w in workers:
            out(f"  {w.name}  queues={','.join(w.queues)}  threads={w.threads}  processed={w.processed}")
            for r in w.running:
                out(
                    f"    running {r['actor_name']} {r['message_id']} for {now - r['started_at']:.1f} s ({r['thread']})"
                )
        stuck = monitoring.stuck_tasks(workers)
        out("")
        out(f"stuck tasks (running on a worker without heartbeat): {len(stuck)}")
        for s in stuck:
            out(
                f"  {s.record.message_id} {s.record.actor_name} started {s.record.started_at:%Y-%m-%d %H:%M:%S} on {s.record.worker}"
            )
        if letters:
            out("")
            out("dead letters (oldest first):")
            for d in letters:
                actor = d.message.actor_name if d.message else "(undecodable)"
                call = str(d.message.args) if d.message else ""
                out(
                    f"  {d.queue_name}  {d.message_id or d.broker_id}  {actor}{call}  at {d.dead_lettered_at:%Y-%m-%d %H:%M:%S}"
                )
