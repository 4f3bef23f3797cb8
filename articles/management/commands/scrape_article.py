from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from articles.models import Article
from pipeline.actors import scrape_article
from pipeline.feeds.article_pages import request_page_fetch
from pipeline.taskqueue.enqueue import send_on_commit
from pipeline.taskqueue.names import Origin


class Command(BaseCommand):
    help = (
        "Fetch one article's page again (whatever its feed's full_text setting says), then process it again; "
        "queued for the workers, or here and now with --sync."
    )

    def add_arguments(self, parser):
        parser.add_argument("article_id", type=int)
        parser.add_argument("--sync", action="store_true", help="Fetch here and now and print what happened")

    def handle(self, *args, article_id: int, sync: bool, **options) -> None:
        article = Article.objects.filter(pk=article_id).first()
        if article is None:
            raise CommandError(f"article {article_id} does not exist")
        if not article.url:
            raise CommandError(f"article {article_id} has no link to fetch")
        request_page_fetch(article)
        if sync:
            self.stdout.write(json.dumps(scrape_article(article_id)))
            return
        self.stdout.write(f"queued: task {send_on_commit(scrape_article, article_id, origin=Origin.COMMAND)}")
