from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from articles.management.progress import progress_bar
from pipeline.search.evaluation import (
    DEFAULT_DRAWS,
    DEFAULT_SHOTS,
    evaluate_classifier,
    read_descriptions,
    read_labelled_csv,
)


def _shots(value: str) -> list[int]:
    try:
        shots = [int(part) for part in value.split(",") if part.strip()]
    except ValueError as error:
        raise CommandError(f"--shots takes comma-separated integers, not {value!r}") from error
    if not shots or min(shots) < 1:
        raise CommandError("--shots needs at least one positive integer")
    return shots


class Command(BaseCommand):
    help = (
        "Score zero-shot and few-shot topic classification and similar-article precision@k "
        "on a labelled CSV (no database needed)."
    )
    # Pure computation on a file: no checks, so it runs without a reachable database.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("csv", help="CSV file with a header row")
        parser.add_argument("--text-column", required=True, help="column holding the article text")
        parser.add_argument("--label-column", required=True, help="column holding the topic label")
        parser.add_argument("--descriptions", help="JSON file mapping label to a one-sentence description")
        parser.add_argument(
            "--shots",
            default=",".join(map(str, DEFAULT_SHOTS)),
            help="labelled articles per topic for few-shot, comma-separated (default %(default)s)",
        )
        parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS, help="random draws per shots value")
        parser.add_argument("--k", type=int, default=10, help="neighbours scored for precision@k")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["draws"] < 1 or options["k"] < 1:
            raise CommandError("--draws and --k must be positive")
        shots = _shots(options["shots"])
        try:
            texts, labels = read_labelled_csv(options["csv"], options["text_column"], options["label_column"])
            descriptions = read_descriptions(options["descriptions"]) if options["descriptions"] else None
        except (OSError, ValueError) as error:
            raise CommandError(str(error)) from error
        if len(set(labels)) < 2:
            raise CommandError("the label column needs at least two distinct labels")
        if descriptions:
            unknown = sorted(set(descriptions) - set(labels))
            if unknown:
                self.stderr.write(f"descriptions for labels not in the CSV, ignored: {', '.join(unknown)}")

        with progress_bar(self, total=len(texts), unit="text", desc="embedding") as bar:
            result = evaluate_classifier(
                texts,
                labels,
                descriptions,
                shots=shots,
                draws=options["draws"],
                k=options["k"],
                seed=options["seed"],
                progress=bar.update,
            )
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(self._table(result))

    def _table(self, result: dict[str, Any]) -> str:
        topics = ", ".join(f"{topic} {count}" for topic, count in result["topics"].items())
        neighbours = result["neighbours"]
        lines = [
            f"rows        {result['rows']} ({topics}); embedded in {result['embedding_seconds']} s",
            f"zero-shot   accuracy {result['zero_shot']['accuracy']:.2%}"
            f" (mean confidence {result['zero_shot']['mean_confidence']:.2%})",
            "            per topic: "
            + ", ".join(f"{topic} {rate:.1%}" for topic, rate in result["zero_shot"]["per_topic"].items()),
        ]
        for few in result["few_shot"]:
            if "skipped" in few:
                lines.append(f"{few['shots']:>3}-shot    skipped: {few['skipped']}")
            else:
                lines.append(
                    f"{few['shots']:>3}-shot    accuracy {few['accuracy']:.2%}"
                    f" (mean of {few['draws']} draws, {few['accuracy_min']:.2%}-{few['accuracy_max']:.2%})"
                )
        k = neighbours["k"]
        lines += [
            f"similar     precision@{k} {neighbours['precision']:.2%}"
            f" (without topics {neighbours['precision_without_topics']:.2%},"
            f" raw nearest neighbours {neighbours['precision_raw']:.2%})",
        ]
        return "\n".join(lines)
