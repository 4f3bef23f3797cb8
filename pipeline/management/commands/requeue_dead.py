from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from pipeline.taskqueue.dead_letters import dead_letter_queues, requeue_dead_letters
from pipeline.taskqueue.errors import QueueUnavailable, queue_errors_as_unavailable


class Command(BaseCommand):
    help = "Put dead-lettered messages back on their queues (all queues, one queue, or given task ids)."

    def add_arguments(self, parser):
        parser.add_argument("--queue", help="only this queue's dead letters")
        parser.add_argument("task_ids", nargs="*", help="only these tasks (message ids)")

    def handle(self, *args, queue: str | None = None, task_ids: list[str] | None = None, **options) -> None:
        try:
            with queue_errors_as_unavailable():
                if queue and queue not in dead_letter_queues():
                    raise CommandError(f"unknown queue {queue!r}")
                requeued = requeue_dead_letters(queue, task_ids or None)
        except QueueUnavailable as error:
            raise CommandError(str(error)) from None
        for task_id in requeued:
            self.stdout.write(f"requeued {task_id}")
        self.stdout.write(f"{len(requeued)} message(s) requeued")
