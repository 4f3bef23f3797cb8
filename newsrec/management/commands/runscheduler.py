from __future__ import annotations

from django.core.management.base import BaseCommand

from newsrec.scheduler import build_scheduler


class Command(BaseCommand):
    help = "Run the APScheduler process that enqueues the periodic sweeps (settings.SCHEDULE)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-startup-run",
            action="store_true",
            help="Do not run each sweep once a few seconds after start (they still run on schedule).",
        )

    def handle(self, *args, no_startup_run: bool = False, **options) -> None:
        scheduler = build_scheduler(startup_delay=-1 if no_startup_run else 5.0)
        for job in scheduler.get_jobs():
            self.stdout.write(f"scheduled: {job.name}")
        try:
            scheduler.start()
        except (KeyboardInterrupt, SystemExit):
            self.stdout.write("scheduler stopped")
