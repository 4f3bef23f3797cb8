from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from pipeline.search.limits import DEFAULT_K, MAX_K
from pipeline.search.similarity import check_k, check_query, search_articles, summary


class Command(BaseCommand):
    help = "Semantic search over processed articles, as GET /api/search/?q=…&k=… answers it."

    def add_arguments(self, parser):
        parser.add_argument("query", help="the text to search for")
        parser.add_argument("--k", default=DEFAULT_K, help=f"how many articles (1-{MAX_K}, default {DEFAULT_K})")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the API's JSON instead of a table"
        )

    def handle(self, *args, query: str, k: str, as_json: bool, **options) -> None:
        try:
            text, count = check_query(query), check_k(k)
        except ValueError as error:
            raise CommandError(str(error)) from None
        results = [summary(scored) for scored in search_articles(text, count)]
        write_results(self, results, as_json=as_json)


def write_results(command: BaseCommand, results: list[dict[str, object]], *, as_json: bool) -> None:
    """One line per article (score, id, topic, title), or the JSON list."""
    if as_json:
        command.stdout.write(json.dumps(results, indent=2))
        return
    if not results:
        command.stdout.write("no articles found")
    for row in results:
        command.stdout.write(f"{row['score']:.3f}  #{row['id']:<7} {str(row['topic'] or '-'):<14} {row['title']}")
