from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from articles.services import add_feed
from pipeline.actors import scrape_feed
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.names import Origin


class Command(BaseCommand):
    help = "Add a feed by URL and queue its first scrape."

    def add_arguments(self, parser):
        parser.add_argument("url")
        parser.add_argument("--title", default="")
        parser.add_argument("--no-scrape", action="store_true", help="Only store the feed; the scheduler polls it.")

    def handle(self, *args, url: str, title: str, no_scrape: bool, **options) -> None:
        try:
            feed, created = add_feed(url, title=title)
        except ValidationError as error:
            raise CommandError(f"url: {'; '.join(error.messages)}") from None
        self.stdout.write(f"{'added' if created else 'already present'}: feed {feed.pk} {feed.url}")
        if not no_scrape:
            task_id = send_on_commit(scrape_feed, feed.pk, origin=Origin.COMMAND)
            self.stdout.write(f"scrape queued: task {task_id}")
