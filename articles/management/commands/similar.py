from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from articles.management.commands.search import write_results
from articles.models import Article
from pipeline.search.limits import DEFAULT_K, MAX_K
from pipeline.search.similarity import NotEmbedded, check_k, similar_articles, summary


class Command(BaseCommand):
    help = "Articles similar to one article, as GET /api/articles/{id}/similar/?k=… answers it."

    def add_arguments(self, parser):
        parser.add_argument("article_id", type=int)
        parser.add_argument("--k", default=DEFAULT_K, help=f"how many articles (1-{MAX_K}, default {DEFAULT_K})")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the API's JSON instead of a table"
        )

    def handle(self, *args, article_id: int, k: str, as_json: bool, **options) -> None:
        try:
            count = check_k(k)
        except ValueError as error:
            raise CommandError(str(error)) from None
        article = Article.objects.filter(pk=article_id).first()
        if article is None:
            raise CommandError(f"no article {article_id}")
        try:
            found = similar_articles(article, count)
        except NotEmbedded as error:
            raise CommandError(str(error)) from None
        if not as_json:
            self.stdout.write(f"similar to #{article.pk} {article.title}")
        write_results(self, [summary(scored) for scored in found], as_json=as_json)
