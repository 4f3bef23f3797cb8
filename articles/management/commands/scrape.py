from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from articles.management.progress import progress_bar
from articles.models import Feed
from pipeline.actors import process_articles, scrape_due_feeds, scrape_feed
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.names import Origin


class Command(BaseCommand):
    help = "Scrape one feed (--feed ID) or all due feeds; queued for the workers, or in-process with --sync."

    def add_arguments(self, parser):
        parser.add_argument("--feed", type=int, help="Feed id; default: every feed that is due")
        parser.add_argument(
            "--sync", action="store_true", help="Run the actors here and now, then process the new articles"
        )

    def handle(self, *args, feed: int | None, sync: bool, **options) -> None:
        if feed is not None and not Feed.objects.filter(pk=feed).exists():
            raise CommandError(f"feed {feed} does not exist")
        if not sync:
            task_id = (
                send_on_commit(scrape_feed, feed, origin=Origin.COMMAND)
                if feed is not None
                else send_on_commit(scrape_due_feeds, origin=Origin.COMMAND)
            )
            self.stdout.write(f"queued: task {task_id}")
            return
        feed_ids = (
            [feed] if feed is not None else list(Feed.objects.filter(is_active=True).values_list("id", flat=True))
        )
        with progress_bar(self, total=len(feed_ids), unit="feed", desc="scraping") as bar:
            for feed_id in feed_ids:
                outcome = scrape_feed(feed_id, chain=False)
                new_ids = outcome["new_article_ids"]
                processed = process_articles(new_ids) if new_ids else {"processed": 0, "failed": 0}
                outcome.pop("new_article_ids")
                outcome.pop("follow_up_task_ids")
                with bar.external_write_mode(file=sys.stderr):  # the bar steps aside for the line
                    self.stdout.write(json.dumps({**outcome, "new_articles": len(new_ids), "processing": processed}))
                bar.update(1)
