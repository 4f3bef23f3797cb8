from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pipeline.taskqueue.retention import purge_task_records


class Command(BaseCommand):
    help = "Delete task records older than TASK_RECORD_RETENTION_DAYS (or --days), in short batches."

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=float,
            default=None,
            help=f"age in days (default TASK_RECORD_RETENTION_DAYS={settings.TASK_RECORD_RETENTION_DAYS})",
        )

    def handle(self, *args, days: float | None = None, **options) -> None:
        if days is not None and days < 0:
            raise CommandError("--days must not be negative")
        deleted = purge_task_records(older_than=timedelta(days=days) if days is not None else None)
        self.stdout.write(f"deleted {deleted} task record(s)")
