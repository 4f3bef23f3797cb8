from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand

from articles.management.progress import progress_bar
from articles.models import Article
from pipeline.actors import process_articles, process_pending_articles
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.names import Origin


class Command(BaseCommand):
    help = "Process pending articles: queue the sweep for the workers, or embed and classify here with --sync."

    def add_arguments(self, parser):
        parser.add_argument("--sync", action="store_true", help="Process every pending article in this process")

    def handle(self, *args, sync: bool, **options) -> None:
        if not sync:
            task_id = send_on_commit(process_pending_articles, origin=Origin.COMMAND)
            self.stdout.write(f"queued: task {task_id}")
            return
        totals = {"processed": 0, "failed": 0}
        # Batches by id order; each batch only touches rows still pending, so this always advances.
        last_id = 0
        pending = Article.objects.filter(status=Article.Status.PENDING).count()
        with progress_bar(self, total=pending, unit="article", desc="processing") as bar:
            while True:
                ids = list(
                    Article.objects.filter(status=Article.Status.PENDING, pk__gt=last_id)
                    .order_by("id")
                    .values_list("id", flat=True)[: settings.PROCESSING_BATCH_SIZE]
                )
                if not ids:
                    break
                last_id = ids[-1]
                result = process_articles(ids)
                totals["processed"] += int(result["processed"])
                totals["failed"] += int(result["failed"])
                bar.update(len(ids))
        self.stdout.write(json.dumps(totals))
