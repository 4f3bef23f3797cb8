from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from pipeline.feeds.opml import export_opml


class Command(BaseCommand):
    help = "Write every feed as OPML 2.0 (categories as folders), to stdout or --output FILE."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", type=Path, help="default: stdout")

    def handle(self, *args, output: Path | None, **options) -> None:
        document = export_opml()
        if output is None:
            self.stdout.write(document.decode("utf-8"), ending="")
        else:
            output.write_bytes(document)
            self.stderr.write(f"wrote {output}")
