from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from articles.models import Article
from pipeline.search.limits import MAX_K
from pipeline.search.recommending import recommend


class Command(BaseCommand):
    help = "Print a user's recommendations, as GET /api/recommendations/ gives them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--k", type=int, default=10, help=f"how many (1-{MAX_K}, default %(default)s)")
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        k = options["k"]
        if not 1 <= k <= MAX_K:
            raise CommandError(f"--k must be from 1 to {MAX_K}")
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        found = recommend(user.pk, k)
        articles = Article.objects.select_related("topic").in_bulk([item.article_id for item in found.items])
        rows = [(item, articles[item.article_id]) for item in found.items if item.article_id in articles]
        if options["json"]:
            results = [
                {
                    "id": article.pk,
                    "title": article.title,
                    "url": article.url,
                    "published_at": article.published_at.isoformat() if article.published_at else None,
                    "topic": article.topic.name if article.topic else None,
                    "score": item.score,
                }
                for item, article in rows
            ]
            self.stdout.write(json.dumps({"strategy": found.strategy, "results": results}))
            return
        self.stdout.write(f"{found.strategy.replace('_', ' ')} recommendations for {user.get_username()}:")
        for rank, (item, article) in enumerate(rows, start=1):
            published = f"{article.published_at:%Y-%m-%d %H:%M}" if article.published_at else "-"
            topic = article.topic.name if article.topic else "-"
            self.stdout.write(f"{rank:>3}. {item.score:6.3f}  {published}  [{topic}] #{article.pk} {article.title}")
        if not rows:
            self.stdout.write("  (no processed articles to recommend yet)")
