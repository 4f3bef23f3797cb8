from __future__ import annotations

import time

from django.core.management.base import BaseCommand

from pipeline.search import vector_index


class Command(BaseCommand):
    help = (
        "Rebuild this machine's vector index cache from the embeddings in Postgres and save it. "
        "Running web and worker processes keep their own copy in memory and reconcile it with Postgres "
        "on their own; the next process to start loads this file."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (for logs)")

    def handle(self, *args, no_progress: bool, **options) -> None:
        started = time.monotonic()
        # The bar only on a terminal: in cron jobs and logs it would be noise.
        size, kind, path = vector_index.rebuild_on_disk(progress=not no_progress and self.stdout.isatty())
        vector_index.reset_index()
        self.stdout.write(f"indexed {size} articles ({kind}) in {time.monotonic() - started:.1f} s; saved {path}")
