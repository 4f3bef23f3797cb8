from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from articles.services import add_feed
from pipeline.actors import scrape_feed
from pipeline.feeds.discovery import DiscoveryError, find_feeds
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.names import Origin


class Command(BaseCommand):
    help = "Add a feed by URL and queue its first scrape."

    def add_arguments(self, parser):
        parser.add_argument("url")
        parser.add_argument("--title", default="")
        parser.add_argument("--no-scrape", action="store_true", help="Only store the feed; the scheduler polls it.")
        parser.add_argument(
            "--discover", action="store_true", help="The URL may be a website: fetch it and find its feed."
        )

    def handle(self, *args, url: str, title: str, no_scrape: bool, discover: bool, **options) -> None:
        if discover:
            try:
                found = find_feeds(url)
            except DiscoveryError as error:
                raise CommandError(f"{error.reason}; tried: {', '.join(error.tried)}") from None
            if len(found) > 1:
                listed = "".join(f"\n  {feed.url}  {feed.title}" for feed in found)
                raise CommandError(f"several feeds found at {url}; add the one you want:{listed}")
            url, title = found[0].url, title or found[0].title
        try:
            feed, created = add_feed(url, title=title)
        except ValidationError as error:
            raise CommandError(f"url: {'; '.join(error.messages)}") from None
        self.stdout.write(f"{'added' if created else 'already present'}: feed {feed.pk} {feed.url}")
        if not no_scrape:
            task_id = send_on_commit(scrape_feed, feed.pk, origin=Origin.COMMAND)
            self.stdout.write(f"scrape queued: task {task_id}")
